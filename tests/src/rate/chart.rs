//! The rate report's SVG bar chart: each hook's rate relative to no hook.

use std::path::Path;

use anyhow::{Result, anyhow};

use super::{Hook, Kind, Series, ratio};

/// A bar chart of each hook's rate relative to no hook, per packet kind.
pub(super) fn chart<'a>(
    path: &Path,
    series: &'a [Series],
    find: &dyn Fn(Hook, Kind) -> Option<&'a Series>,
) -> Result<()> {
    use plotters::prelude::*;
    let bars: Vec<(String, f64)> = series
        .iter()
        .filter_map(|s| {
            let r = ratio(s, find(Hook::None, s.kind)?)?;
            Some((
                format!(
                    "{} / {}",
                    s.kind.name().split(' ').next().unwrap_or(""),
                    s.hook.name()
                ),
                r,
            ))
        })
        .collect();
    let root = SVGBackend::new(path, (900, 60 + 32 * bars.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let max = bars.iter().map(|b| b.1).fold(1.0f64, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&root)
        .caption(
            "forwarded rate relative to no hook (1.0 = no hook)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(320)
        .build_cartesian_2d(0.0..max, 0..bars.len())
        .map_err(|e| anyhow!("{e}"))?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    c.configure_mesh()
        .y_labels(bars.len())
        .y_label_formatter(&|i| labels.get(*i).cloned().unwrap_or_default())
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    c.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let color = if b.0.contains("pktguard") {
            BLUE
        } else {
            RGBColor(150, 150, 150)
        };
        Rectangle::new([(0.0, i), (b.1, i + 1)], color.filled())
    }))
    .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
