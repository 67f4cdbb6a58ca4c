//! Plots: a small description of a figure ([`Figure`]: stacked panels sharing a width, each
//! with lines, vertical markers and shaded bands), drawn by plotters as SVG and as PNG.
//!
//! SVG text names the generic `sans-serif` family, which every browser has. PNG text is drawn
//! with a bundled subset of DejaVu Sans (see `assets/README.md`), so no font needs to be
//! installed where reports are made.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// A figure: panels stacked top to bottom.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File stem under `plots/`.
    pub id: String,
    pub title: String,
    pub width: u32,
    pub panel_height: u32,
    pub panels: Vec<Panel>,
    /// The trial and workload the figure belongs to (none: the whole run).
    pub trial: Option<(String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
    pub markers: Vec<Marker>,
    pub bands: Vec<Band>,
    /// Start the y axis at zero.
    pub y_from_zero: bool,
    /// Force the x range (panels sharing a time axis).
    pub x_range: Option<(f64, f64)>,
    /// A logarithmic x axis (values at or below zero are left out).
    pub x_log: bool,
}

#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Index into the palette.
    pub color: usize,
    pub style: LineStyle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineStyle {
    Line,
    LinePoints,
    /// Horizontal then vertical: histograms and per-second counts.
    Step,
}

/// A vertical line with a label (a knee, the SLO limit).
#[derive(Debug, Clone)]
pub struct Marker {
    pub x: f64,
    pub label: String,
    pub color: usize,
}

/// A shaded x interval (warm-up, cool-down).
#[derive(Debug, Clone)]
pub struct Band {
    pub from: f64,
    pub to: f64,
    pub label: String,
}

/// Tableau's ten colours, distinct in print and for most colour-vision deficiencies.
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

pub fn color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        // The bundled font is valid; if it were not, text would be missing, not the plot.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("drawing failed: {0}")]
    Draw(String),
    #[error("PNG encoding failed: {0}")]
    Png(String),
}

fn draw_err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

impl Figure {
    pub fn height(&self) -> u32 {
        self.panel_height * self.panels.len().max(1) as u32 + 40
    }

    /// The figure as an SVG document.
    pub fn svg(&self) -> Result<String, PlotError> {
        register_font();
        let mut out = String::new();
        {
            let root =
                SVGBackend::with_string(&mut out, (self.width, self.height())).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(draw_err)?;
        }
        Ok(out)
    }

    /// The figure as a PNG image.
    pub fn png(&self) -> Result<Vec<u8>, PlotError> {
        register_font();
        let (w, h) = (self.width, self.height());
        let mut rgb = vec![255u8; (w * h * 3) as usize];
        {
            let backend =
                crate::raster::Raster::new(BitMapBackend::with_buffer(&mut rgb, (w, h)), FONT)
                    .ok_or_else(|| PlotError::Draw("the bundled font cannot be read".into()))?;
            let root = backend.into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(draw_err)?;
        }
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            // Plots are mostly flat colour: the fastest setting compresses them well.
            enc.set_compression(png::Compression::Fastest);
            let mut writer = enc
                .write_header()
                .map_err(|e| PlotError::Png(e.to_string()))?;
            writer
                .write_image_data(&rgb)
                .map_err(|e| PlotError::Png(e.to_string()))?;
        }
        Ok(out)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        root.fill(&WHITE).map_err(draw_err)?;
        let body = root
            .titled(&self.title, ("sans-serif", 20))
            .map_err(draw_err)?;
        let areas = body.split_evenly((self.panels.len().max(1), 1));
        // One legend width for every panel, so that stacked panels share their x axis.
        let legend = self
            .panels
            .iter()
            .map(Panel::legend_width)
            .max()
            .unwrap_or(0);
        let legend = legend.min(self.width / 3);
        for (area, panel) in areas.iter().zip(&self.panels) {
            panel.draw(area, legend)?;
        }
        Ok(())
    }
}

/// A number for an axis: short, without trailing zeros.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    let s = if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') && !s.ends_with(['k', 'M']) {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn step_points(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2);
    for (i, &(x, y)) in points.iter().enumerate() {
        if i > 0 {
            out.push((x, points[i - 1].1));
        }
        out.push((x, y));
    }
    out
}

impl Panel {
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let pts = self.lines.iter().flat_map(|l| l.points.iter().copied());
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for (x, y) in pts.filter(|p| p.0.is_finite() && p.1.is_finite()) {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        for m in &self.markers {
            x0 = x0.min(m.x);
            x1 = x1.max(m.x);
        }
        if let Some((a, b)) = self.x_range {
            (x0, x1) = (a, b);
        }
        if !x0.is_finite() || !x1.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if !y0.is_finite() || !y1.is_finite() {
            (y0, y1) = (0.0, 1.0);
        }
        if self.y_from_zero {
            y0 = y0.min(0.0);
        }
        if x1 <= x0 {
            (x0, x1) = (x0 - 1.0, x1 + 1.0);
        }
        if y1 <= y0 {
            (y0, y1) = (y0 - 1.0, y1 + 1.0);
        }
        let pad = (y1 - y0) * 0.08;
        (
            (x0, x1),
            (
                if self.y_from_zero && y0 >= 0.0 {
                    y0
                } else {
                    y0 - pad
                },
                y1 + pad,
            ),
        )
    }

    /// The panel with x moved to log10(x), for a logarithmic axis.
    fn log_x(&self) -> Panel {
        let lg = |x: f64| (x > 0.0).then(|| x.log10());
        let mut p = self.clone();
        for l in &mut p.lines {
            l.points = l
                .points
                .iter()
                .filter_map(|&(x, y)| Some((lg(x)?, y)))
                .collect();
        }
        p.markers.retain(|m| m.x > 0.0);
        for m in &mut p.markers {
            m.x = m.x.log10();
        }
        p.bands.retain(|b| b.from > 0.0 && b.to > 0.0);
        for b in &mut p.bands {
            (b.from, b.to) = (b.from.log10(), b.to.log10());
        }
        p.x_range = p.x_range.and_then(|(a, b)| Some((lg(a)?, lg(b)?)));
        p.x_log = false;
        p
    }

    fn named(&self) -> Vec<&Line> {
        self.lines
            .iter()
            .filter(|l| !l.name.is_empty() && !l.points.is_empty())
            .collect()
    }

    /// Pixels the legend beside the plot needs (0: no legend).
    fn legend_width(&self) -> u32 {
        match self.named().iter().map(|l| l.name.chars().count()).max() {
            Some(longest) => (longest as u32 * 7 + 40).clamp(90, 260),
            None => 0,
        }
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        legend_width: u32,
    ) -> Result<(), PlotError> {
        if self.x_log {
            return self.log_x().draw_with(area, legend_width, true);
        }
        self.draw_with(area, legend_width, false)
    }

    fn draw_with<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        legend_width: u32,
        log_x: bool,
    ) -> Result<(), PlotError> {
        let ((x0, x1), (y0, y1)) = self.ranges();
        // The legend sits beside the plot, where it never hides data.
        let named = self.named();
        let (w, _) = area.dim_in_pixel();
        let (plot, legend) = if legend_width == 0 {
            (area.clone(), None)
        } else {
            let (a, b) = area.split_horizontally(w.saturating_sub(legend_width));
            (a, Some(b))
        };
        if let Some(legend) = &legend {
            for (i, l) in named.iter().enumerate() {
                let c = color(l.color);
                let y = 40 + 18 * i as i32;
                legend
                    .draw(&PathElement::new(vec![(4, y), (24, y)], c.stroke_width(3)))
                    .map_err(draw_err)?;
                legend
                    .draw(&Text::new(
                        l.name.clone(),
                        (30, y),
                        ("sans-serif", 12)
                            .into_font()
                            .color(&RGBColor(40, 40, 40))
                            .pos(Pos::new(HPos::Left, VPos::Center)),
                    ))
                    .map_err(draw_err)?;
            }
        }
        let area = &plot;
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, ("sans-serif", 15))
            .margin(8)
            .margin_right(24)
            .x_label_area_size(38)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 13))
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(215, 215, 215))
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&|v| {
                if log_x {
                    short_number(10f64.powf(*v))
                } else {
                    short_number(*v)
                }
            })
            .y_label_formatter(&|v| short_number(*v))
            .draw()
            .map_err(draw_err)?;
        for b in &self.bands {
            let (from, to) = (b.from.max(x0), b.to.min(x1));
            if to <= from {
                continue;
            }
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(from, y0), (to, y1)],
                    RGBColor(120, 120, 120).mix(0.15).filled(),
                )))
                .map_err(draw_err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(" {}", b.label),
                    (from, y0 + (y1 - y0) * 0.02),
                    ("sans-serif", 11)
                        .into_font()
                        .color(&RGBColor(90, 90, 90))
                        .pos(Pos::new(HPos::Left, VPos::Bottom)),
                )))
                .map_err(draw_err)?;
        }
        for l in &self.lines {
            if l.points.is_empty() {
                continue;
            }
            let c = color(l.color);
            let pts = if l.style == LineStyle::Step {
                step_points(&l.points)
            } else {
                l.points.clone()
            };
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(draw_err)?;
            if l.style == LineStyle::LinePoints {
                chart
                    .draw_series(l.points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(draw_err)?;
            }
        }
        for (i, m) in self.markers.iter().enumerate() {
            let c = color(m.color);
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(m.x, y0), (m.x, y1)],
                    6,
                    4,
                    c.stroke_width(2),
                ))
                .map_err(draw_err)?;
            // Near the x axis, staggered so that markers at nearby loads stay readable; on the
            // side of the line with more room.
            let y = y0 + (y1 - y0) * (0.03 + 0.075 * i as f64);
            let right_half = m.x > x0 + (x1 - x0) * 0.5;
            chart
                .draw_series(std::iter::once(Text::new(
                    if right_half {
                        format!("{} ", m.label)
                    } else {
                        format!(" {}", m.label)
                    },
                    (m.x, y),
                    ("sans-serif", 12).into_font().color(&c).pos(Pos::new(
                        if right_half { HPos::Right } else { HPos::Left },
                        VPos::Bottom,
                    )),
                )))
                .map_err(draw_err)?;
        }
        Ok(())
    }
}

/// At most `max` points, evenly spaced by index, keeping the first and the last.
pub fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let step = (points.len() - 1) as f64 / (max - 1) as f64;
    (0..max)
        .map(|i| points[((i as f64 * step).round() as usize).min(points.len() - 1)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure() -> Figure {
        Figure {
            id: "t".into(),
            title: "Test figure".into(),
            width: 600,
            panel_height: 260,
            trial: None,
            panels: vec![Panel {
                title: "latency".into(),
                x_label: "load".into(),
                y_label: "ms".into(),
                lines: vec![Line {
                    name: "p99".into(),
                    points: vec![(1.0, 10.0), (2.0, 11.0), (3.0, 40.0)],
                    color: 0,
                    style: LineStyle::LinePoints,
                }],
                markers: vec![Marker {
                    x: 2.0,
                    label: "knee".into(),
                    color: 3,
                }],
                bands: vec![Band {
                    from: 0.5,
                    to: 1.5,
                    label: "warm-up".into(),
                }],
                y_from_zero: true,
                x_range: None,
                x_log: false,
            }],
        }
    }

    #[test]
    fn draws_svg_and_png() {
        let f = figure();
        let svg = f.svg().unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("knee") && svg.contains("Test figure"));
        let png = f.png().unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn numbers_and_thinning() {
        assert_eq!(short_number(0.0), "0");
        assert_eq!(short_number(12.5), "12.5");
        assert_eq!(short_number(1500.0), "1500");
        assert_eq!(short_number(25_000.0), "25k");
        assert_eq!(short_number(0.25), "0.25");
        let pts: Vec<(f64, f64)> = (0..1000).map(|i| (f64::from(i), 0.0)).collect();
        let t = thin(&pts, 100);
        assert_eq!(t.len(), 100);
        assert_eq!(t[0].0, 0.0);
        assert_eq!(t[99].0, 999.0);
    }
}
