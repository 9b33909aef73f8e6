//! SVG charts of the results (plotters, SVG backend only): grouped bars per model, and
//! lines for the per-worker distribution.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const SIZE: (u32, u32) = (1000, 560);

/// One named series of values, one per category; `None` is drawn as `n/a`.
pub type Series = (String, Vec<Option<f64>>);

/// Grouped bars: one group per category (model), one bar per series.
pub fn bars(
    path: &Path,
    title: &str,
    y_desc: &str,
    categories: &[String],
    series: &[Series],
) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let n = categories.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(150)
        .y_label_area_size(80)
        .build_cartesian_2d((0..n).into_segmented(), 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(n)
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&|v| short_number(*v))
        .y_desc(y_desc)
        .draw()?;
    // Category names run down from under the middle of each group (rotated a quarter turn).
    let label_font = ("sans-serif", 13)
        .into_font()
        .transform(FontTransform::Rotate90);
    for (c, name) in categories.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(SegmentValue::CenterOf(c), 0.0));
        root.draw(&Text::new(name.clone(), (x + 7, y + 8), label_font.clone()))?;
    }
    let k = series.len().max(1) as f64;
    for (c, _) in categories.iter().enumerate() {
        let left = chart.backend_coord(&(SegmentValue::Exact(c), 0.0));
        let right = chart.backend_coord(&(SegmentValue::Exact(c + 1), 0.0));
        let width = f64::from(right.0 - left.0);
        if series
            .iter()
            .all(|(_, v)| v.get(c).copied().flatten().is_none())
        {
            let font = ("sans-serif", 12).into_font().color(&BLACK.mix(0.6));
            let x = left.0 + (width * 0.5) as i32 - 10;
            root.draw(&Text::new("n/a", (x, left.1 - 16), font))?;
            continue;
        }
        for (s, (_, values)) in series.iter().enumerate() {
            let x0 = left.0 + (width * (0.1 + 0.8 * s as f64 / k)) as i32;
            let x1 = left.0 + (width * (0.1 + 0.8 * (s + 1) as f64 / k)) as i32 - 1;
            if let Some(v) = values.get(c).copied().flatten() {
                let y = chart.backend_coord(&(SegmentValue::Exact(c), v)).1;
                let style = Palette99::pick(s).filled();
                root.draw(&Rectangle::new([(x0, y), (x1, left.1)], style))?;
            }
        }
    }
    for (s, (name, _)) in series.iter().enumerate() {
        let (x, y) = (SIZE.0 as i32 - 260, 50 + 20 * s as i32);
        root.draw(&Rectangle::new(
            [(x, y), (x + 14, y + 14)],
            Palette99::pick(s).filled(),
        ))?;
        root.draw(&Text::new(name.clone(), (x + 20, y), ("sans-serif", 14)))?;
    }
    root.present()?;
    Ok(())
}

/// One bar per category (the median) with a whisker over its spread (`low`, `high`).
pub fn bars_with_spread(
    path: &Path,
    title: &str,
    y_desc: &str,
    categories: &[String],
    values: &[Option<f64>],
    spread: &[Option<(f64, f64)>],
) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let top = values
        .iter()
        .flatten()
        .chain(spread.iter().flatten().map(|(_, high)| high))
        .fold(0.0f64, |a, &b| a.max(b));
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let n = categories.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(150)
        .y_label_area_size(80)
        .build_cartesian_2d((0..n).into_segmented(), 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(n)
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&|v| short_number(*v))
        .y_desc(y_desc)
        .draw()?;
    let label_font = ("sans-serif", 13)
        .into_font()
        .transform(FontTransform::Rotate90);
    for (c, name) in categories.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(SegmentValue::CenterOf(c), 0.0));
        root.draw(&Text::new(name.clone(), (x + 7, y + 8), label_font.clone()))?;
        let left = chart.backend_coord(&(SegmentValue::Exact(c), 0.0));
        let right = chart.backend_coord(&(SegmentValue::Exact(c + 1), 0.0));
        let width = f64::from(right.0 - left.0);
        let (x0, x1) = (left.0 + (width * 0.2) as i32, left.0 + (width * 0.8) as i32);
        let Some(v) = values.get(c).copied().flatten() else {
            let font = ("sans-serif", 12).into_font().color(&BLACK.mix(0.6));
            root.draw(&Text::new("n/a", (x - 10, left.1 - 16), font))?;
            continue;
        };
        let y_of = |v: f64| chart.backend_coord(&(SegmentValue::Exact(c), v)).1;
        root.draw(&Rectangle::new(
            [(x0, y_of(v)), (x1, left.1)],
            Palette99::pick(0).filled(),
        ))?;
        if let Some((low, high)) = spread.get(c).copied().flatten() {
            let (yl, yh) = (y_of(low), y_of(high));
            let style = BLACK.stroke_width(2);
            root.draw(&PathElement::new([(x, yl), (x, yh)], style))?;
            root.draw(&PathElement::new([(x - 6, yl), (x + 6, yl)], style))?;
            root.draw(&PathElement::new([(x - 6, yh), (x + 6, yh)], style))?;
        }
    }
    root.present()?;
    Ok(())
}

/// Lines: x = index (worker number), one line per series.
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<f64>)],
) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let len = series
        .iter()
        .map(|(_, v)| v.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter())
        .fold(0.0f64, |a, &b| a.max(b));
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..(len - 1) as f64, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_label_formatter(&|v| short_number(*v))
        .y_desc(y_desc)
        .draw()?;
    for (s, (name, values)) in series.iter().enumerate() {
        let color = Palette99::pick(s);
        let points = values.iter().enumerate().map(|(i, &v)| (i as f64, v));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// `80000` → `80k`, `0.25` → `0.25`: axis labels without a trailing `.0`.
fn short_number(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.abs() >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
