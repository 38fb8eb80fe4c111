//! Geohash: coarse locations. troc shares at most 6 characters (a cell of about 1.2 km x 0.6 km);
//! people enter a latitude and longitude, which is coarsened here before it is ever signed.
//!
//! Distances between cells are computed between cell centres, so every distance troc shows is
//! approximate by design ("about 2 km"), never a way back to an address.

/// The geohash base-32 alphabet (no a, i, l, o).
pub const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";

/// Encodes a position as a geohash of `precision` characters (clamped to 1..=12).
/// Latitude is clamped to [-90, 90] and longitude wrapped into [-180, 180).
pub fn encode(lat: f64, lon: f64, precision: usize) -> String {
    let precision = precision.clamp(1, 12);
    let lat = if lat.is_finite() { lat.clamp(-90.0, 90.0) } else { 0.0 };
    let lon = if lon.is_finite() { (lon + 180.0).rem_euclid(360.0) - 180.0 } else { 0.0 };
    let (mut lat_lo, mut lat_hi) = (-90.0f64, 90.0f64);
    let (mut lon_lo, mut lon_hi) = (-180.0f64, 180.0f64);
    let mut out = String::with_capacity(precision);
    let mut even = true;
    let mut bits = 0u8;
    let mut ch = 0usize;
    while out.len() < precision {
        if even {
            let mid = (lon_lo + lon_hi) / 2.0;
            if lon >= mid {
                ch = (ch << 1) | 1;
                lon_lo = mid;
            } else {
                ch <<= 1;
                lon_hi = mid;
            }
        } else {
            let mid = (lat_lo + lat_hi) / 2.0;
            if lat >= mid {
                ch = (ch << 1) | 1;
                lat_lo = mid;
            } else {
                ch <<= 1;
                lat_hi = mid;
            }
        }
        even = !even;
        bits += 1;
        if bits == 5 {
            out.push(ALPHABET[ch] as char);
            bits = 0;
            ch = 0;
        }
    }
    out
}

/// The bounding box of a geohash cell: (lat_min, lat_max, lon_min, lon_max). `None` for an empty or
/// invalid geohash.
pub fn bounds(hash: &str) -> Option<(f64, f64, f64, f64)> {
    if hash.is_empty() {
        return None;
    }
    let (mut lat_lo, mut lat_hi) = (-90.0f64, 90.0f64);
    let (mut lon_lo, mut lon_hi) = (-180.0f64, 180.0f64);
    let mut even = true;
    for b in hash.bytes() {
        let v = ALPHABET.iter().position(|&a| a == b)?;
        for i in (0..5).rev() {
            let bit = (v >> i) & 1 == 1;
            if even {
                let mid = (lon_lo + lon_hi) / 2.0;
                if bit { lon_lo = mid } else { lon_hi = mid }
            } else {
                let mid = (lat_lo + lat_hi) / 2.0;
                if bit { lat_lo = mid } else { lat_hi = mid }
            }
            even = !even;
        }
    }
    Some((lat_lo, lat_hi, lon_lo, lon_hi))
}

/// The centre of a geohash cell.
pub fn center(hash: &str) -> Option<(f64, f64)> {
    bounds(hash).map(|(a, b, c, d)| ((a + b) / 2.0, (c + d) / 2.0))
}

/// Great-circle distance in km between two positions (haversine, mean Earth radius).
pub fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let dlat = lat2 - lat1;
    let dlon = lon2 - lon1;
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * 6371.0088 * h.sqrt().clamp(0.0, 1.0).asin()
}

/// Approximate distance in km between the centres of two geohash cells.
pub fn distance_km(a: &str, b: &str) -> Option<f64> {
    Some(haversine_km(center(a)?, center(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Wikipedia's example: 57.64911, 10.40744 is u4pruydqqvj.
        assert_eq!(encode(57.64911, 10.40744, 11), "u4pruydqqvj");
        assert_eq!(encode(57.64911, 10.40744, 6), "u4pruy");
        let (lat, lon) = center("u4pruydqqvj").unwrap();
        assert!((lat - 57.64911).abs() < 1e-4 && (lon - 10.40744).abs() < 1e-4);
        assert!(bounds("a").is_none());
        assert!(bounds("").is_none());
    }

    #[test]
    fn distances_are_plausible() {
        // Paris to London is about 344 km.
        let d = haversine_km((48.8566, 2.3522), (51.5074, -0.1278));
        assert!((d - 343.5).abs() < 2.0, "{d}");
        let paris = encode(48.8566, 2.3522, 6);
        let london = encode(51.5074, -0.1278, 6);
        let d = distance_km(&paris, &london).unwrap();
        assert!((d - 343.5).abs() < 3.0, "{d}");
    }

    #[test]
    fn hostile_numbers_do_not_panic() {
        for (lat, lon) in [(f64::NAN, 0.0), (1e308, -1e308), (f64::INFINITY, f64::NEG_INFINITY)] {
            assert_eq!(encode(lat, lon, 6).len(), 6);
        }
    }
}
