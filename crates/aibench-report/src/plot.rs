//! Plots: a small description of a figure ([`Figure`]: stacked panels sharing a width, each
//! with lines, vertical markers and shaded bands), drawn by plotters as SVG and as PNG.
//!
//! SVG text names the generic `sans-serif` family, which every browser has. PNG text is drawn
//! with a bundled subset of DejaVu Sans (see `assets/README.md`), so no font needs to be
//! installed where reports are made.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

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
            let root = SVGBackend::with_string(&mut out, (self.width, self.height()))
                .into_drawing_area();
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
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(draw_err)?;
        }
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
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
        for (area, panel) in areas.iter().zip(&self.panels) {
            panel.draw(area)?;
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
        ((x0, x1), (if self.y_from_zero && y0 >= 0.0 { y0 } else { y0 - pad }, y1 + pad))
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        let ((x0, x1), (y0, y1)) = self.ranges();
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
            .x_label_formatter(&|v| short_number(*v))
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
                    b.label.clone(),
                    (from, y1),
                    ("sans-serif", 11).into_font().color(&RGBColor(90, 90, 90)),
                )))
                .map_err(draw_err)?;
        }
        let mut legend = false;
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
            let series = chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(draw_err)?;
            if !l.name.is_empty() {
                legend = true;
                series.label(l.name.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3))
                });
            }
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
            // Stagger labels so that markers at nearby loads stay readable.
            let y = y1 - (y1 - y0) * (0.06 + 0.07 * i as f64);
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(" {}", m.label),
                    (m.x, y),
                    ("sans-serif", 12).into_font().color(&c),
                )))
                .map_err(draw_err)?;
        }
        if legend {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .label_font(("sans-serif", 12))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
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
