"""Build a small word-level tokenizer for peers that insist on a Hugging Face tokenizer.

Run with a Python that has `tokenizers` and `transformers` (vLLM's environment has both):

    python make_tokenizer.py OUT_DIR

The vocabulary is a few hundred English words plus `t0`..`t1999`, the words `aibench sim`
streams back, so prompts made of these words and the simulator's outputs round-trip exactly:
one whitespace-separated word is one token, as the simulator counts them.
"""

import sys

WORDS = """
the of and to in is it that was for on are as with his they at be this from have or by one
had not but what all were when we there can an your which their said if do will each about
how up out them then she many some so these would other into has more her two like him see
time could no make than first been its who now people my made over did down only way find
use may water long little very after words called just where most know get through back much
before go good new write our used me man too any day same right look think also around another
came come work three word must because does part even place well such here take why things
help put years different away again off went old number great tell men say small every found
still between name should home big give air line set own under read last never us left end
along while might next sound below saw something thought both few those always looked show
large often together asked house world going want school important until form food keep
children feet land side without boy once animals life enough took sometimes four head above
kind began almost live page got earth need far hand high year mother light parts country
father let night following picture being study second eyes soon times story boys since white
days paper hard near sentence better best across during today others however sure means knew
its try told young miles sun ways thing whole hear example heard several change answer room
sea against top turned learn point city play toward five using himself usually money seen
car morning given body family later order move red door box open plan beautiful color
""".split()


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out = sys.argv[1]
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    specials = ["[UNK]", "<s>", "</s>", "[PAD]"]
    vocab = {}
    for w in specials + WORDS + [f"t{i}" for i in range(2000)]:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="[PAD]",
    )
    fast.model_max_length = 8192
    fast.save_pretrained(out)
    text = "the water t0 t1 t99"
    ids = fast.encode(text, add_special_tokens=False)
    back = fast.decode(ids)
    if back != text:
        print(f"round trip failed: {text!r} -> {back!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
