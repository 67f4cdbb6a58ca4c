//! The PNG drawing backend: plotters' bitmap backend, with text laid out glyph by glyph from
//! the bundled font (each glyph placed at its own bearing, kerning applied), so labels in PNG
//! plots read as evenly as in SVG.

use ab_glyph::{point, Font, FontRef, OutlinedGlyph, PxScale, ScaleFont};
use plotters::prelude::BitMapBackend;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
};

pub struct Raster<'a> {
    inner: BitMapBackend<'a>,
    font: FontRef<'static>,
}

impl<'a> Raster<'a> {
    /// `None` only if the bundled font cannot be parsed.
    pub fn new(inner: BitMapBackend<'a>, font: &'static [u8]) -> Option<Raster<'a>> {
        Some(Raster {
            inner,
            font: FontRef::try_from_slice(font).ok()?,
        })
    }

    /// The outlined glyphs of `text` at `size` pixels, and the text's width and height.
    fn layout(&self, text: &str, size: f64) -> (Vec<OutlinedGlyph>, i32, i32) {
        let scale = PxScale::from(size as f32);
        let scaled = self.font.as_scaled(scale);
        let ascent = scaled.ascent();
        let mut caret = 0.0f32;
        let mut prev = None;
        let mut glyphs = Vec::new();
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = prev {
                caret += scaled.kern(p, id);
            }
            let g = id.with_scale_and_position(scale, point(caret, ascent));
            if let Some(o) = self.font.outline_glyph(g) {
                glyphs.push(o);
            }
            caret += scaled.h_advance(id);
            prev = Some(id);
        }
        let height = (scaled.ascent() - scaled.descent()).ceil() as i32;
        (glyphs, caret.ceil() as i32, height)
    }
}

type Err<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

impl<'a> DrawingBackend for Raster<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), Err<'a>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), Err<'a>> {
        self.inner.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), Err<'a>> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), Err<'a>> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), Err<'a>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), Err<'a>> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), Err<'a>> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), Err<'a>> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        (iw, ih): (u32, u32),
        src: &[u8],
    ) -> Result<(), Err<'a>> {
        self.inner.blit_bitmap(pos, (iw, ih), src)
    }

    fn estimate_text_size<TStyle: BackendTextStyle>(
        &self,
        text: &str,
        style: &TStyle,
    ) -> Result<(u32, u32), Err<'a>> {
        let (_, w, h) = self.layout(text, style.size());
        Ok((w.max(0) as u32, h.max(0) as u32))
    }

    fn draw_text<TStyle: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), Err<'a>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let (glyphs, width, height) = self.layout(text, style.size());
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let trans = style.transform();
        let (w, h) = self.get_size();
        let mut pixels = Vec::new();
        for g in &glyphs {
            let b = g.px_bounds();
            g.draw(|x, y, coverage| {
                if coverage > 0.0 {
                    let (tx, ty) = trans.transform(
                        b.min.x as i32 + x as i32 + dx,
                        b.min.y as i32 + y as i32 + dy,
                    );
                    pixels.push(((pos.0 + tx, pos.1 + ty), coverage));
                }
            });
        }
        for ((x, y), coverage) in pixels {
            if x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h {
                self.inner.draw_pixel(
                    (x, y),
                    BackendColor {
                        alpha: color.alpha * f64::from(coverage.min(1.0)),
                        rgb: color.rgb,
                    },
                )?;
            }
        }
        Ok(())
    }
}
