//! How far apart two countries are, and how far a point is from a country:
//! for checks that ask whether two places can be reached from each other in
//! time, such as two logins of one account from countries farther apart than
//! a plane could fly between them, or which countries a browser can be in
//! when it answers a server faster than light allows from farther away.
//!
//! Countries are the boundaries in [`tables`]: Natural Earth's
//! 1:50m admin-0 polygons, each cut down to at most 64 vertices (see
//! `docs/DATA.md`). Distances are great circles on a sphere of radius
//! [`EARTH_RADIUS_KM`] (the haversine formula). The cut-down boundaries make
//! them accurate as follows:
//!
//! - Countries with a land border share a point of it: they are 0 km apart.
//! - Countries less than 500 km apart across water (SG–MY, GB–FR, ES–MA)
//!   keep the two vertices nearest each other: their distance is Natural
//!   Earth's to within a kilometre or two (the points are rounded to 0.01°).
//! - Otherwise the distance is measured between kept points, which
//!   overestimates the distance between the boundaries by at most the two
//!   countries' [`sampling_gap_km`]: under 50 km for most countries, a few
//!   hundred for the largest (RU, CA, US, AQ, ID, CN). Subtract both gaps for
//!   a figure that never overestimates.
//!
//! Nothing here allocates: a country has at most 64 points, so comparing two
//! takes a few thousand multiplications and the sines and cosines of at most
//! 128 points, a few microseconds.
//!
//! ```
//! use meridian_verifier::geo::distance::{country_distance_km, distance_to_country_km};
//!
//! let germany_to_japan = country_distance_km("DE", "JP").unwrap_or(0.0);
//! assert!(germany_to_japan > 7_500.0);
//! assert_eq!(country_distance_km("DE", "FR"), Some(0.0));
//! // Berlin is in Germany.
//! assert_eq!(distance_to_country_km("DE", 52.52, 13.40), Some(0.0));
//! assert_eq!(country_distance_km("DE", "ZZ"), None);
//! ```

use crate::tables::{self, CountryShape, MAX_POINTS};

/// The mean Earth radius the distances use, km.
pub const EARTH_RADIUS_KM: f64 = 6371.0;

/// The least great-circle distance between the kept points of two countries
/// (ISO 3166-1 alpha-2, upper case, as [`Country::as_str`] gives them), in km;
/// 0 for the same country or countries with a land border. `None` when either
/// country has no shape (an unknown code, or a territory too small for 1:50m,
/// listed in `tables/NOTICE.md`).
///
/// Neighbours across water closer than 500 km come out as Natural Earth has
/// them; farther pairs are overestimated by at most
/// `sampling_gap_km(a) + sampling_gap_km(b)`.
///
/// [`Country::as_str`]: crate::geo::Country::as_str
pub fn country_distance_km(a: &str, b: &str) -> Option<f64> {
    let (shape_a, shape_b) = (tables::country_shape(a)?, tables::country_shape(b)?);
    if a == b {
        return Some(0.0);
    }
    let mut kept = [[0.0; 3]; MAX_POINTS];
    let mut count = 0;
    // `zip` stops at MAX_POINTS; the generator never emits more (a table test checks).
    for (slot, point) in kept.iter_mut().zip(points(shape_a)) {
        *slot = unit_vector(point);
        count += 1;
    }
    let kept = &kept[..count];
    let nearest = points(shape_b)
        .map(|point| {
            let there = unit_vector(point);
            kept.iter().map(|here| chord2(here, &there)).fold(f64::INFINITY, f64::min)
        })
        .fold(f64::INFINITY, f64::min);
    Some(km_of_chord2(nearest))
}

/// The least great-circle distance from the point (`lat`, `lon`, degrees) to
/// `country`'s kept points, in km; 0 when the point lies inside the country.
/// `None` when the country has no shape or the point is not a coordinate
/// (not finite, or a latitude beyond ±90°). Any longitude is taken modulo 360°.
///
/// "Inside" is tested against the cut-down polygons (even–odd rule, holes
/// such as Lesotho in South Africa included), not the full boundary: a
/// point within a few kilometres of a coast or border may come out just
/// outside, with a distance of a few kilometres, up to about the country's
/// [`sampling_gap_km`]. A point outside is overestimated by at most that gap.
pub fn distance_to_country_km(country: &str, lat: f64, lon: f64) -> Option<f64> {
    let shape = tables::country_shape(country)?;
    if !lat.is_finite() || !lon.is_finite() || lat.abs() > 90.0 {
        return None;
    }
    if contains(shape, lat, lon) {
        return Some(0.0);
    }
    let here = unit_vector([lat, lon]);
    let nearest = points(shape).map(|point| chord2(&here, &unit_vector(point))).fold(f64::INFINITY, f64::min);
    Some(km_of_chord2(nearest))
}

/// The greatest great-circle distance from the point (`lat`, `lon`,
/// degrees) to any part of `country`, in km: the farthest kept point plus
/// the country's [`sampling_gap_km`], so it is never less than the map's.
/// `None` when the country has no shape or the point is not a coordinate.
pub fn farthest_in_country_km(country: &str, lat: f64, lon: f64) -> Option<f64> {
    let shape = tables::country_shape(country)?;
    if !lat.is_finite() || !lon.is_finite() || lat.abs() > 90.0 {
        return None;
    }
    let here = unit_vector([lat, lon]);
    let farthest = points(shape).map(|point| chord2(&here, &unit_vector(point))).fold(0.0, f64::max);
    Some((km_of_chord2(farthest) + f64::from(shape.gap_km)).min(std::f64::consts::PI * EARTH_RADIUS_KM))
}

/// How far, at most, any vertex of `country`'s Natural Earth boundary lies
/// from the nearest point kept of it, in km: the most by which a distance to
/// that country is overestimated. `None` when the country has no shape.
pub fn sampling_gap_km(country: &str) -> Option<f64> {
    tables::country_shape(country).map(|shape| f64::from(shape.gap_km))
}

/// Every point kept of a country, `[lat, lon]` in degrees.
fn points(shape: &'static CountryShape) -> impl Iterator<Item = [f64; 2]> {
    shape
        .rings
        .iter()
        .flat_map(|ring| ring.points)
        .chain(shape.lone_points)
        .map(|&[lat, lon]| [f64::from(lat), f64::from(lon)])
}

/// The point on the unit sphere at `[lat, lon]` degrees.
fn unit_vector([lat, lon]: [f64; 2]) -> [f64; 3] {
    let (sin_lat, cos_lat) = lat.to_radians().sin_cos();
    let (sin_lon, cos_lon) = lon.to_radians().sin_cos();
    [cos_lat * cos_lon, cos_lat * sin_lon, sin_lat]
}

/// The squared straight-line distance between two points on the unit
/// sphere: it orders pairs as the great-circle distance does, and costs no
/// trigonometry.
fn chord2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    let (x, y, z) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    x * x + y * y + z * z
}

/// The great-circle distance, km, between points a squared chord apart.
/// This is the haversine formula, `2R·asin(√h)`: its
/// `h = sin²(Δφ/2) + cos φ₁ cos φ₂ sin²(Δλ/2)` is the squared chord over four.
fn km_of_chord2(chord2: f64) -> f64 {
    2.0 * EARTH_RADIUS_KM * (chord2.sqrt() / 2.0).min(1.0).asin()
}

/// Whether the point is inside an odd number of the country's rings.
fn contains(shape: &CountryShape, lat: f64, lon: f64) -> bool {
    let mut inside = false;
    for ring in shape.rings {
        let [south, west, north, east] = ring.bbox.map(f64::from);
        if lat < south || lat > north {
            continue;
        }
        // A ring's longitudes start within ±180 and may run on past it; take
        // the point's longitude into the turn that starts at the ring's west edge.
        let lon = west + (lon - west).rem_euclid(360.0);
        if lon <= east && ring_contains(ring.points, lat, lon) {
            inside = !inside;
        }
    }
    inside
}

/// Crossing-number test of one ring, in plain latitude and longitude: a ray
/// from the point eastward crosses the ring an odd number of times if and
/// only if the point is inside.
fn ring_contains(points: &[[f32; 2]], lat: f64, lon: f64) -> bool {
    let Some(&last) = points.last() else {
        return false;
    };
    let mut inside = false;
    let [mut lat_a, mut lon_a] = last.map(f64::from);
    for &point in points {
        let [lat_b, lon_b] = point.map(f64::from);
        if (lat_a > lat) != (lat_b > lat) && lon < lon_a + (lat - lat_a) * (lon_b - lon_a) / (lat_b - lat_a) {
            inside = !inside;
        }
        [lat_a, lon_a] = [lat_b, lon_b];
    }
    inside
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    fn km(a: &str, b: &str) -> f64 {
        country_distance_km(a, b).unwrap()
    }

    fn great_circle_km(a: [f64; 2], b: [f64; 2]) -> f64 {
        km_of_chord2(chord2(&unit_vector(a), &unit_vector(b)))
    }

    #[test]
    fn the_haversine_figures_are_the_usual_ones() {
        // Berlin–Tokyo, London–New York: 8 920 km and 5 570 km by the haversine.
        let berlin_tokyo = great_circle_km([52.52, 13.40], [35.68, 139.69]);
        assert!((berlin_tokyo - 8_917.0).abs() < 5.0, "{berlin_tokyo}");
        let london_new_york = great_circle_km([51.507, -0.128], [40.713, -74.006]);
        assert!((london_new_york - 5_570.0).abs() < 5.0, "{london_new_york}");
        // Across the antimeridian, and pole to pole.
        let across = great_circle_km([0.0, 179.5], [0.0, -179.5]);
        assert!((across - 111.2).abs() < 0.1, "{across}");
        let poles = great_circle_km([90.0, 0.0], [-90.0, 0.0]);
        assert!((poles - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1e-6, "{poles}");
    }

    /// Countries with a land border share a kept point: 0 exactly, where
    /// points sampled without that rule would put them up to the two
    /// countries' gaps apart (DE 35 km + FR 46 km; US 293 km + CA 312 km).
    #[test]
    fn land_neighbours_touch() {
        for (a, b) in
            [("DE", "FR"), ("US", "CA"), ("CN", "HK"), ("US", "MX"), ("ZA", "LS"), ("IT", "VA"), ("BR", "GF")]
        {
            assert_eq!(country_distance_km(a, b), Some(0.0), "{a}–{b}");
            assert_eq!(country_distance_km(b, a), Some(0.0), "{b}–{a}");
        }
        assert_eq!(country_distance_km("JP", "JP"), Some(0.0));
    }

    /// Neighbours across water keep their nearest vertices; the figures in
    /// the comments are the least distance between all the vertices of
    /// Natural Earth's 1:50m boundaries, before sampling and rounding.
    #[test]
    fn neighbours_across_water_keep_their_distance() {
        for (a, b, source_km) in [
            ("SG", "MY", 3.1),  // the Johor Strait
            ("GB", "FR", 36.9), // the Strait of Dover, as 1:50m draws it
            ("ES", "MA", 16.9), // the Strait of Gibraltar (Ceuta is too small for 1:50m)
            ("DK", "SE", 7.2),  // the Øresund
            ("JP", "RU", 6.3),  // Hokkaido and the Kurils
            ("JP", "KR", 57.4), // Tsushima and Busan
            ("US", "RU", 84.6), // the Bering Strait
            ("CN", "JP", 409.0),
        ] {
            let sampled = km(a, b);
            assert!((sampled - source_km).abs() < 2.0, "{a}–{b}: {sampled} km, the source says {source_km}");
        }
    }

    #[test]
    fn far_countries_are_as_far_as_the_map_says() {
        // Rügen to Rebun Island; Berlin–Tokyo is 8 917 km, the nearest parts less.
        let de_jp = km("DE", "JP");
        assert!((7_800.0..8_000.0).contains(&de_jp), "DE–JP {de_jp}");
        // Singapore to Hainan.
        let sg_cn = km("SG", "CN");
        assert!((1_900.0..2_100.0).contains(&sg_cn), "SG–CN {sg_cn}");
        // Natural Earth draws French Guiana inside France's feature; it has
        // its own code (GF) and is split off, so France is the mainland and
        // Corsica, an ocean away from Brazil.
        let fr_br = km("FR", "BR");
        assert!((6_000.0..7_000.0).contains(&fr_br), "FR–BR {fr_br}");
        // Sampled distances overestimate by at most both gaps.
        for (a, b, source_km) in [("DE", "JP", 7_832.9), ("SG", "CN", 1_965.5), ("FR", "BR", 6_360.1)] {
            let slack = sampling_gap_km(a).unwrap() + sampling_gap_km(b).unwrap();
            assert!(km(a, b) - slack <= source_km, "{a}–{b}");
        }
        // Symmetric.
        assert_eq!(km("NZ", "AR"), km("AR", "NZ"));
    }

    #[test]
    fn gaps_are_measured() {
        for (code, at_most) in
            [("SG", 6.0), ("HK", 6.0), ("DE", 40.0), ("FR", 50.0), ("US", 300.0), ("RU", 450.0)]
        {
            let gap = sampling_gap_km(code).unwrap();
            assert!(gap > 0.0 && gap <= at_most, "{code}: {gap} km");
        }
        assert_eq!(sampling_gap_km("ZZ"), None);
    }

    #[test]
    fn points_inside_are_at_zero() {
        for (country, lat, lon, place) in [
            ("DE", 52.52, 13.40, "Berlin"),
            ("FR", 48.86, 2.35, "Paris"),
            ("US", 39.74, -104.99, "Denver"),
            // Russia's mainland ring runs on past 180° to Chukotka's east end.
            ("RU", 65.5, 179.5, "Chukotka, west of the antimeridian"),
            ("RU", 65.5, -178.0, "Chukotka, east of the antimeridian"),
            ("FJ", -16.6, 179.2, "Vanua Levu"),
            ("FJ", -17.8, 178.0, "Viti Levu"),
            ("AQ", -85.0, 0.0, "the polar plateau"),
            ("AQ", -89.9, 123.0, "near the South Pole"),
            ("JP", 35.68, 139.69, "Tokyo"),
            ("ZA", -26.2, 28.05, "Johannesburg"),
            ("LS", -29.6, 28.2, "Lesotho's highlands"),
            ("XK", 42.66, 21.17, "Pristina"),
        ] {
            assert_eq!(distance_to_country_km(country, lat, lon), Some(0.0), "{place} in {country}");
        }
        // Longitudes are taken modulo 360°.
        assert_eq!(distance_to_country_km("DE", 52.52, 13.40 + 720.0), Some(0.0));
        // A hole is not inside: Maseru is in Lesotho, which South Africa surrounds.
        let maseru = distance_to_country_km("ZA", -29.6, 28.2).unwrap();
        assert!(maseru > 10.0, "Lesotho counted inside South Africa: {maseru}");
    }

    #[test]
    fn points_outside_are_measured() {
        let singapore_to_my = distance_to_country_km("MY", 1.29, 103.85).unwrap();
        assert!((5.0..30.0).contains(&singapore_to_my), "{singapore_to_my}");
        // Berlin to Lauterbourg, France's north-east corner: 535 km.
        let berlin_to_fr = distance_to_country_km("FR", 52.52, 13.40).unwrap();
        assert!((535.0..575.0).contains(&berlin_to_fr), "{berlin_to_fr}");
        let tokyo_to_de = distance_to_country_km("DE", 35.68, 139.69).unwrap();
        assert!((8_500.0..8_900.0).contains(&tokyo_to_de), "{tokyo_to_de}");
        assert_eq!(distance_to_country_km("DE", 0.0, 0.0).map(|d| d > 5_000.0), Some(true));
        // The limit of cutting down: Oahu keeps fewer than three of the
        // United States' 64 points, so encloses nothing, and Honolulu comes
        // out as far from the nearest kept point, within the US gap.
        let honolulu = distance_to_country_km("US", 21.31, -157.86).unwrap();
        assert!(honolulu <= sampling_gap_km("US").unwrap(), "{honolulu}");
    }

    #[test]
    fn nonsense_is_unknown() {
        assert_eq!(country_distance_km("DE", "ZZ"), None);
        assert_eq!(country_distance_km("", "DE"), None);
        assert_eq!(distance_to_country_km("ZZ", 0.0, 0.0), None);
        assert_eq!(distance_to_country_km("DE", f64::NAN, 0.0), None);
        assert_eq!(distance_to_country_km("DE", 0.0, f64::INFINITY), None);
        assert_eq!(distance_to_country_km("DE", 90.5, 0.0), None);
    }
}
