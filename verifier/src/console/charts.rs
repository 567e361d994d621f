//! Charts drawn on the server as SVG: no script, no outside library. Each
//! comes with its numbers as a table, for screen readers and for anyone
//! who wants the figures.
//!
//! SVG elements are closed explicitly (`{}`): inside an HTML page an
//! unclosed `<rect>` would swallow the elements after it.

use maud::{Markup, html};

/// Verdict counts of one bar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stack {
    pub allow: u64,
    pub review: u64,
    pub deny: u64,
}

impl Stack {
    pub(crate) fn total(self) -> u64 {
        self.allow + self.review + self.deny
    }

    /// Adds `n` to the verdict's count.
    pub(crate) fn add(&mut self, verdict: crate::verdict::Verdict, n: u64) {
        use crate::verdict::Verdict;
        match verdict {
            Verdict::Allow => self.allow += n,
            Verdict::Review => self.review += n,
            Verdict::Deny => self.deny += n,
        }
    }

    /// Each verdict present with its class, where it starts and its
    /// length at `scale` units per verification, laid end to end from `from`
    /// (`sign` −1 lays them upwards).
    fn segments(self, from: f64, scale: f64, sign: f64) -> Vec<(&'static str, f64, f64)> {
        let mut at = from;
        [("allow", self.allow), ("review", self.review), ("deny", self.deny)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(class, n)| {
                let length = n as f64 * scale;
                let start = if sign < 0.0 { at - length } else { at };
                at += sign * length;
                (class, start, length)
            })
            .collect()
    }
}

/// The legend every chart shares.
fn legend() -> Markup {
    html! {
        ul.legend aria-hidden="true" {
            li { span.swatch.allow {} "allow" }
            li { span.swatch.review {} "review" }
            li { span.swatch.deny {} "deny" }
        }
    }
}

/// The numbers behind a chart, as a table.
fn data_table(caption: &str, key: &str, rows: &[(String, Stack)]) -> Markup {
    html! {
        details {
            summary { "The numbers" }
            div.scroll {
                table.data {
                    caption { (caption) }
                    thead { tr { th scope="col" { (key) } th scope="col" { "allow" } th scope="col" { "review" }
                        th scope="col" { "deny" } th scope="col" { "total" } } }
                    tbody {
                        @for (label, stack) in rows {
                            tr { th scope="row" { (label) } td { (stack.allow) } td { (stack.review) }
                                td { (stack.deny) } td { (stack.total()) } }
                        }
                    }
                }
            }
        }
    }
}

/// Stacked columns over time: one per bucket, labelled under some of them.
pub(crate) fn columns(id: &str, title: &str, columns: &[(String, Stack)]) -> Markup {
    const WIDTH: f64 = 720.0;
    const HEIGHT: f64 = 200.0;
    const LEFT: f64 = 44.0;
    const BOTTOM: f64 = 24.0;
    let max = columns.iter().map(|(_, s)| s.total()).max().unwrap_or(0).max(1);
    let slot = (WIDTH - LEFT) / columns.len().max(1) as f64;
    let scale = (HEIGHT - BOTTOM - 8.0) / max as f64;
    // About six labels, none cut at the right edge.
    let every = columns.len().div_ceil(6).max(1);
    let total: u64 = columns.iter().map(|(_, s)| s.total()).sum();
    html! {
        figure.chart id=(id) {
            figcaption { h2 { (title) } }
            (legend())
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label={ (title) ": " (total) " verifications" }
                xmlns="http://www.w3.org/2000/svg" font-size="11" {
                line x1=(LEFT) y1=(HEIGHT - BOTTOM) x2=(WIDTH) y2=(HEIGHT - BOTTOM) class="axis" {}
                text x=(LEFT - 6.0) y="14" text-anchor="end" class="tick" { (max) }
                text x=(LEFT - 6.0) y=(HEIGHT - BOTTOM) text-anchor="end" class="tick" { "0" }
                @for (i, (label, stack)) in columns.iter().enumerate() {
                    @let x = LEFT + i as f64 * slot;
                    g.bar data-key=(label) data-allow=(stack.allow) data-review=(stack.review) data-deny=(stack.deny) {
                        title { (label) ": " (stack.allow) " allow, " (stack.review) " review, " (stack.deny) " deny" }
                        @for (class, top, h) in stack.segments(HEIGHT - BOTTOM, scale, -1.0) {
                            rect class=(class) x=(x + slot * 0.1) y=(top) width=(slot * 0.8) height=(h) {}
                        }
                    }
                    @if i % every == 0 && i + every / 2 < columns.len() {
                        text x=(x) y=(HEIGHT - 8.0) text-anchor="start" class="tick" { (label) }
                    }
                }
            }
            (data_table(title, "period", columns))
        }
    }
}

/// Stacked horizontal bars, one per row, its label on the left.
pub(crate) fn bars(id: &str, title: &str, key: &str, rows: &[(String, Stack)]) -> Markup {
    const WIDTH: f64 = 480.0;
    const LABEL: f64 = 180.0;
    const ROW: f64 = 22.0;
    let height = ROW * rows.len().max(1) as f64 + 4.0;
    let max = rows.iter().map(|(_, s)| s.total()).max().unwrap_or(0).max(1);
    let scale = (WIDTH - LABEL - 40.0) / max as f64;
    html! {
        figure.chart id=(id) {
            figcaption { h2 { (title) } }
            (legend())
            @if rows.is_empty() {
                p.empty { "Nothing in this period." }
            } @else {
                svg viewBox={ "0 0 " (WIDTH) " " (height) } role="img" aria-label=(title)
                    xmlns="http://www.w3.org/2000/svg" font-size="12" {
                    @for (i, (label, stack)) in rows.iter().enumerate() {
                        @let y = i as f64 * ROW + 2.0;
                        g.bar data-key=(label) data-allow=(stack.allow) data-review=(stack.review) data-deny=(stack.deny) {
                            title { (label) ": " (stack.allow) " allow, " (stack.review) " review, " (stack.deny) " deny" }
                            text x=(LABEL - 8.0) y=(y + ROW * 0.68) text-anchor="end" class="label" { (label) }
                            @for (class, left, w) in stack.segments(LABEL, scale, 1.0) {
                                rect class=(class) x=(left) y=(y + 3.0) width=(w) height=(ROW - 6.0) {}
                            }
                            text x=(LABEL + stack.total() as f64 * scale + 6.0) y=(y + ROW * 0.68) class="tick" {
                                (stack.total())
                            }
                        }
                    }
                }
            }
            (data_table(title, key, rows))
        }
    }
}

/// Left edge of the offset strip (UTC−12) and the width of one hour, in
/// SVG units; the strip runs to UTC+14, the easternmost offset in use.
const STRIP_X: f64 = 20.0;
const HOUR: f64 = 20.0;

fn strip_x(offset_min: i32) -> f64 {
    STRIP_X + (f64::from(offset_min.clamp(-12 * 60, 14 * 60)) / 60.0 + 12.0) * HOUR
}

/// `UTC+08:00`, `UTC−03:30`.
pub(crate) fn utc_offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '−' } else { '+' };
    let minutes = minutes.unsigned_abs();
    format!("UTC{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The account's device clocks against its networks' countries: on a strip
/// of every offset from UTC−12 to UTC+14, green bands for the offsets in
/// use in the countries its sign-ins came from, blue marks for the offsets
/// its devices' zones were at, each with how often.
pub(crate) fn offset_strip(bands: &[i32], devices: &[(i32, u32)], caption: &str) -> Markup {
    html! {
        figure.chart id="offset-strip" {
            figcaption { h2 { "Device clocks against network countries" } }
            svg viewBox="0 0 560 120" role="img" aria-label=(caption) xmlns="http://www.w3.org/2000/svg" font-size="12" {
                rect x=(STRIP_X) y="40" width=(26.0 * HOUR) height="28" rx="4" class="strip" {}
                @for hour in -12..=14 {
                    @let tick = strip_x(hour * 60);
                    line x1=(tick) y1="68" x2=(tick) y2=(if hour % 3 == 0 { 76 } else { 72 }) class="axis" {}
                    @if hour % 3 == 0 {
                        text x=(tick) y="90" text-anchor="middle" class="tick" {
                            @if hour > 0 { "+" (hour) } @else if hour < 0 { "−" (-hour) } @else { "0" }
                        }
                    }
                }
                @for offset in bands {
                    rect class="country-offset" data-offset=(offset) x=(strip_x(*offset) - HOUR / 2.0) y="40"
                        width=(HOUR) height="28" {}
                }
                @for (offset, count) in devices {
                    g.device-offset data-offset=(offset) data-count=(count) {
                        title { (utc_offset(*offset)) ": " (count) " sign-in(s)" }
                        line x1=(strip_x(*offset)) y1="32" x2=(strip_x(*offset)) y2="76" class="device" {}
                        text x=(strip_x(*offset)) y="24" text-anchor="middle" class="device-label" { (count) "×" }
                    }
                }
            }
            p { (caption) }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn labels_are_text_and_bars_carry_their_counts() {
        let rows = vec![("<script>alert(1)</script>".to_owned(), Stack { allow: 3, review: 1, deny: 2 })];
        let svg = bars("c", "By country", "country", &rows).into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(svg.contains(r#"data-allow="3" data-review="1" data-deny="2""#));
        let empty = columns("t", "Over time", &[]).into_string();
        assert!(empty.contains("0 verifications"));
        assert_eq!(utc_offset(-210), "UTC−03:30");
        let strip = offset_strip(&[480], &[(480, 2), (60, 1)], "two places").into_string();
        assert_eq!(strip.matches("device-offset").count(), 2);
    }
}
