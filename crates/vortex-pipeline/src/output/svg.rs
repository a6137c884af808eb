//! The VRAM plan drawn as SVG (`vortex plan --svg`).

use vortex_registry::{Placement, VramPlan};

/// The VRAM layout as SVG: one block per owner, to scale, with the soft limit, the hard limit
/// and the device's capacity as lines.
pub fn plan_svg(plan: &VramPlan) -> String {
    let (width, height, left) = (900.0, 120.0 + 22.0 * plan.entries.len() as f64, 40.0);
    let scale = (width - 2.0 * left) / plan.device_capacity.max(plan.device_total()) as f64;
    let colours = [
        "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
        "#9c755f", "#bab0ac",
    ];
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"20\" font-size=\"14\">VRAM plan: {} of {}</text>\n",
        vortex_vram::Bytes(plan.device_total()),
        vortex_vram::Bytes(plan.device_capacity)
    );
    let mut x = left;
    for (i, e) in plan.entries.iter().enumerate() {
        let w = e.device_bytes as f64 * scale;
        let colour = colours[i % colours.len()];
        svg.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"40\" width=\"{w:.1}\" height=\"40\" fill=\"{colour}\" stroke=\"white\"><title>{} {}</title></rect>\n",
            e.owner,
            vortex_vram::Bytes(e.device_bytes)
        ));
        let y = 110.0 + 22.0 * i as f64;
        let place = match e.placement {
            Placement::Device => String::new(),
            Placement::PinnedHost { staging_frames } => {
                format!(" (ring of {staging_frames} frames; video in pinned host memory)")
            }
        };
        svg.push_str(&format!(
            "<rect x=\"{left}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\">{} — {}{place}</text>\n",
            y - 10.0,
            left + 18.0,
            y,
            e.owner,
            vortex_vram::Bytes(e.device_bytes)
        ));
        x += w;
    }
    for (label, bytes, colour) in [
        ("soft", plan.limits.soft(), "#d4a017"),
        ("hard", plan.limits.hard(), "#c0392b"),
        ("device", plan.device_capacity, "black"),
    ] {
        let lx = left + bytes as f64 * scale;
        svg.push_str(&format!(
            "<line x1=\"{lx:.1}\" y1=\"30\" x2=\"{lx:.1}\" y2=\"90\" stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"4 2\"/><text x=\"{:.1}\" y=\"100\" fill=\"{colour}\" text-anchor=\"middle\">{label} {}</text>\n",
            lx,
            vortex_vram::Bytes(bytes)
        ));
    }
    svg.push_str("</svg>\n");
    svg
}
