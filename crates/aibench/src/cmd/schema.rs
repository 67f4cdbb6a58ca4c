//! `aibench schema`: the recipe JSON Schema, generated from the recipe types.

use std::path::PathBuf;

use crate::exit::Outcome;

const AFTER_HELP: &str = "\
The schema (JSON Schema draft 2020-12) is generated from the same types that load recipes, so
it never disagrees with `aibench validate`. Point your editor at it for completion and hover
documentation by starting a recipe with:

  # yaml-language-server: $schema=../schema/recipe.schema.json

Examples:
  aibench schema > recipe.schema.json
";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct SchemaArgs {
    /// Print the recipe reference as Markdown instead (the README embeds it).
    #[arg(long)]
    pub markdown: bool,
    /// Write to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(args: SchemaArgs) -> anyhow::Result<Outcome> {
    let text = if args.markdown {
        aibench_recipe::reference::markdown()
    } else {
        aibench_recipe::schema_string()
    };
    match args.output {
        Some(path) => std::fs::write(&path, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(Outcome::Success)
}
