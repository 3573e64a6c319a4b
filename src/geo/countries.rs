//! The built-in country table: every ISO 3166-1 alpha-2 code (plus `XK`, Kosovo, which MaxMind
//! and DB-IP use) with its continent and an approximate centroid.
//!
//! It fills in what a database leaves out: the flat ip-location-db schema carries only a country
//! code, and GeoIP2 Country databases carry no coordinates. Continents follow GeoNames (as
//! MaxMind does): Russia is `EU`, Turkey and the Caucasus `AS`, Central America and the
//! Caribbean `NA`. Centroids are rough (about a degree), good enough for nearest-region
//! choices; they are not where anyone lives. This module is data only: no I/O, no allocation.

use super::Continent::{self, AF, AN, AS, EU, NA, OC, SA};

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CountryRow {
    /// Uppercase ISO 3166-1 alpha-2 code.
    pub(crate) code: [u8; 2],
    /// Continent the country belongs to (GeoNames convention).
    pub(crate) continent: Continent,
    /// Approximate centroid latitude, degrees north.
    pub(crate) lat: f64,
    /// Approximate centroid longitude, degrees east.
    pub(crate) lon: f64,
}

const fn row(code: [u8; 2], continent: Continent, lat: f64, lon: f64) -> CountryRow {
    CountryRow {
        code,
        continent,
        lat,
        lon,
    }
}

/// Looks a code up (uppercase bytes) by binary search; the table is sorted by code.
pub(crate) fn find(code: [u8; 2]) -> Option<&'static CountryRow> {
    COUNTRIES
        .binary_search_by(|r| r.code.cmp(&code))
        .ok()
        .and_then(|i| COUNTRIES.get(i))
}

/// Every country, sorted by code (the tests check the order, as `find` depends on it).
pub(crate) static COUNTRIES: [CountryRow; 250] = [
    row(*b"AD", EU, 42.5, 1.5),       // Andorra
    row(*b"AE", AS, 24.0, 54.0),      // United Arab Emirates
    row(*b"AF", AS, 33.0, 65.0),      // Afghanistan
    row(*b"AG", NA, 17.05, -61.8),    // Antigua and Barbuda
    row(*b"AI", NA, 18.25, -63.17),   // Anguilla
    row(*b"AL", EU, 41.0, 20.0),      // Albania
    row(*b"AM", AS, 40.0, 45.0),      // Armenia
    row(*b"AO", AF, -12.5, 18.5),     // Angola
    row(*b"AQ", AN, -75.0, 0.0),      // Antarctica
    row(*b"AR", SA, -34.0, -64.0),    // Argentina
    row(*b"AS", OC, -14.33, -170.0),  // American Samoa
    row(*b"AT", EU, 47.33, 13.33),    // Austria
    row(*b"AU", OC, -27.0, 133.0),    // Australia
    row(*b"AW", NA, 12.5, -69.97),    // Aruba
    row(*b"AX", EU, 60.12, 19.9),     // Aland Islands
    row(*b"AZ", AS, 40.5, 47.5),      // Azerbaijan
    row(*b"BA", EU, 44.0, 18.0),      // Bosnia and Herzegovina
    row(*b"BB", NA, 13.17, -59.53),   // Barbados
    row(*b"BD", AS, 24.0, 90.0),      // Bangladesh
    row(*b"BE", EU, 50.83, 4.0),      // Belgium
    row(*b"BF", AF, 13.0, -2.0),      // Burkina Faso
    row(*b"BG", EU, 43.0, 25.0),      // Bulgaria
    row(*b"BH", AS, 26.0, 50.55),     // Bahrain
    row(*b"BI", AF, -3.5, 30.0),      // Burundi
    row(*b"BJ", AF, 9.5, 2.25),       // Benin
    row(*b"BL", NA, 17.9, -62.83),    // Saint Barthelemy
    row(*b"BM", NA, 32.33, -64.75),   // Bermuda
    row(*b"BN", AS, 4.5, 114.67),     // Brunei
    row(*b"BO", SA, -17.0, -65.0),    // Bolivia
    row(*b"BQ", NA, 12.15, -68.27),   // Bonaire, Sint Eustatius and Saba
    row(*b"BR", SA, -10.0, -55.0),    // Brazil
    row(*b"BS", NA, 24.25, -76.0),    // Bahamas
    row(*b"BT", AS, 27.5, 90.5),      // Bhutan
    row(*b"BV", AN, -54.43, 3.4),     // Bouvet Island
    row(*b"BW", AF, -22.0, 24.0),     // Botswana
    row(*b"BY", EU, 53.0, 28.0),      // Belarus
    row(*b"BZ", NA, 17.25, -88.75),   // Belize
    row(*b"CA", NA, 60.0, -95.0),     // Canada
    row(*b"CC", AS, -12.5, 96.83),    // Cocos (Keeling) Islands
    row(*b"CD", AF, -2.5, 23.5),      // Congo (Democratic Republic)
    row(*b"CF", AF, 7.0, 21.0),       // Central African Republic
    row(*b"CG", AF, -1.0, 15.0),      // Congo
    row(*b"CH", EU, 47.0, 8.0),       // Switzerland
    row(*b"CI", AF, 8.0, -5.0),       // Cote d'Ivoire
    row(*b"CK", OC, -21.23, -159.77), // Cook Islands
    row(*b"CL", SA, -30.0, -71.0),    // Chile
    row(*b"CM", AF, 6.0, 12.0),       // Cameroon
    row(*b"CN", AS, 35.0, 105.0),     // China
    row(*b"CO", SA, 4.0, -72.0),      // Colombia
    row(*b"CR", NA, 10.0, -84.0),     // Costa Rica
    row(*b"CU", NA, 21.5, -80.0),     // Cuba
    row(*b"CV", AF, 16.0, -24.0),     // Cabo Verde
    row(*b"CW", NA, 12.17, -69.0),    // Curacao
    row(*b"CX", OC, -10.5, 105.67),   // Christmas Island
    row(*b"CY", EU, 35.0, 33.0),      // Cyprus
    row(*b"CZ", EU, 49.75, 15.5),     // Czechia
    row(*b"DE", EU, 51.0, 9.0),       // Germany
    row(*b"DJ", AF, 11.5, 43.0),      // Djibouti
    row(*b"DK", EU, 56.0, 10.0),      // Denmark
    row(*b"DM", NA, 15.42, -61.33),   // Dominica
    row(*b"DO", NA, 19.0, -70.67),    // Dominican Republic
    row(*b"DZ", AF, 28.0, 3.0),       // Algeria
    row(*b"EC", SA, -2.0, -77.5),     // Ecuador
    row(*b"EE", EU, 59.0, 26.0),      // Estonia
    row(*b"EG", AF, 27.0, 30.0),      // Egypt
    row(*b"EH", AF, 24.5, -13.0),     // Western Sahara
    row(*b"ER", AF, 15.0, 39.0),      // Eritrea
    row(*b"ES", EU, 40.0, -4.0),      // Spain
    row(*b"ET", AF, 8.0, 38.0),       // Ethiopia
    row(*b"FI", EU, 64.0, 26.0),      // Finland
    row(*b"FJ", OC, -18.0, 175.0),    // Fiji
    row(*b"FK", SA, -51.75, -59.0),   // Falkland Islands
    row(*b"FM", OC, 6.92, 158.25),    // Micronesia
    row(*b"FO", EU, 62.0, -7.0),      // Faroe Islands
    row(*b"FR", EU, 46.0, 2.0),       // France
    row(*b"GA", AF, -1.0, 11.75),     // Gabon
    row(*b"GB", EU, 54.0, -2.0),      // United Kingdom
    row(*b"GD", NA, 12.12, -61.67),   // Grenada
    row(*b"GE", AS, 42.0, 43.5),      // Georgia
    row(*b"GF", SA, 4.0, -53.0),      // French Guiana
    row(*b"GG", EU, 49.47, -2.58),    // Guernsey
    row(*b"GH", AF, 8.0, -2.0),       // Ghana
    row(*b"GI", EU, 36.13, -5.35),    // Gibraltar
    row(*b"GL", NA, 72.0, -40.0),     // Greenland
    row(*b"GM", AF, 13.47, -16.57),   // Gambia
    row(*b"GN", AF, 11.0, -10.0),     // Guinea
    row(*b"GP", NA, 16.25, -61.58),   // Guadeloupe
    row(*b"GQ", AF, 2.0, 10.0),       // Equatorial Guinea
    row(*b"GR", EU, 39.0, 22.0),      // Greece
    row(*b"GS", AN, -54.5, -37.0),    // South Georgia and the South Sandwich Islands
    row(*b"GT", NA, 15.5, -90.25),    // Guatemala
    row(*b"GU", OC, 13.47, 144.78),   // Guam
    row(*b"GW", AF, 12.0, -15.0),     // Guinea-Bissau
    row(*b"GY", SA, 5.0, -59.0),      // Guyana
    row(*b"HK", AS, 22.25, 114.17),   // Hong Kong
    row(*b"HM", AN, -53.1, 72.52),    // Heard Island and McDonald Islands
    row(*b"HN", NA, 15.0, -86.5),     // Honduras
    row(*b"HR", EU, 45.17, 15.5),     // Croatia
    row(*b"HT", NA, 19.0, -72.42),    // Haiti
    row(*b"HU", EU, 47.0, 20.0),      // Hungary
    row(*b"ID", AS, -5.0, 120.0),     // Indonesia
    row(*b"IE", EU, 53.0, -8.0),      // Ireland
    row(*b"IL", AS, 31.5, 34.75),     // Israel
    row(*b"IM", EU, 54.23, -4.55),    // Isle of Man
    row(*b"IN", AS, 20.0, 77.0),      // India
    row(*b"IO", AS, -6.0, 71.5),      // British Indian Ocean Territory
    row(*b"IQ", AS, 33.0, 44.0),      // Iraq
    row(*b"IR", AS, 32.0, 53.0),      // Iran
    row(*b"IS", EU, 65.0, -18.0),     // Iceland
    row(*b"IT", EU, 42.83, 12.83),    // Italy
    row(*b"JE", EU, 49.21, -2.13),    // Jersey
    row(*b"JM", NA, 18.25, -77.5),    // Jamaica
    row(*b"JO", AS, 31.0, 36.0),      // Jordan
    row(*b"JP", AS, 36.0, 138.0),     // Japan
    row(*b"KE", AF, 1.0, 38.0),       // Kenya
    row(*b"KG", AS, 41.0, 75.0),      // Kyrgyzstan
    row(*b"KH", AS, 13.0, 105.0),     // Cambodia
    row(*b"KI", OC, 1.42, 173.0),     // Kiribati
    row(*b"KM", AF, -12.17, 44.25),   // Comoros
    row(*b"KN", NA, 17.33, -62.75),   // Saint Kitts and Nevis
    row(*b"KP", AS, 40.0, 127.0),     // North Korea
    row(*b"KR", AS, 37.0, 127.5),     // South Korea
    row(*b"KW", AS, 29.34, 47.66),    // Kuwait
    row(*b"KY", NA, 19.5, -80.5),     // Cayman Islands
    row(*b"KZ", AS, 48.0, 68.0),      // Kazakhstan
    row(*b"LA", AS, 18.0, 105.0),     // Laos
    row(*b"LB", AS, 33.83, 35.83),    // Lebanon
    row(*b"LC", NA, 13.88, -60.97),   // Saint Lucia
    row(*b"LI", EU, 47.17, 9.53),     // Liechtenstein
    row(*b"LK", AS, 7.0, 81.0),       // Sri Lanka
    row(*b"LR", AF, 6.5, -9.5),       // Liberia
    row(*b"LS", AF, -29.5, 28.5),     // Lesotho
    row(*b"LT", EU, 56.0, 24.0),      // Lithuania
    row(*b"LU", EU, 49.75, 6.17),     // Luxembourg
    row(*b"LV", EU, 57.0, 25.0),      // Latvia
    row(*b"LY", AF, 25.0, 17.0),      // Libya
    row(*b"MA", AF, 32.0, -5.0),      // Morocco
    row(*b"MC", EU, 43.73, 7.4),      // Monaco
    row(*b"MD", EU, 47.0, 29.0),      // Moldova
    row(*b"ME", EU, 42.5, 19.3),      // Montenegro
    row(*b"MF", NA, 18.08, -63.05),   // Saint Martin (French part)
    row(*b"MG", AF, -20.0, 47.0),     // Madagascar
    row(*b"MH", OC, 9.0, 168.0),      // Marshall Islands
    row(*b"MK", EU, 41.83, 22.0),     // North Macedonia
    row(*b"ML", AF, 17.0, -4.0),      // Mali
    row(*b"MM", AS, 22.0, 98.0),      // Myanmar
    row(*b"MN", AS, 46.0, 105.0),     // Mongolia
    row(*b"MO", AS, 22.17, 113.55),   // Macao
    row(*b"MP", OC, 15.2, 145.75),    // Northern Mariana Islands
    row(*b"MQ", NA, 14.67, -61.0),    // Martinique
    row(*b"MR", AF, 20.0, -12.0),     // Mauritania
    row(*b"MS", NA, 16.75, -62.2),    // Montserrat
    row(*b"MT", EU, 35.83, 14.58),    // Malta
    row(*b"MU", AF, -20.28, 57.55),   // Mauritius
    row(*b"MV", AS, 3.25, 73.0),      // Maldives
    row(*b"MW", AF, -13.5, 34.0),     // Malawi
    row(*b"MX", NA, 23.0, -102.0),    // Mexico
    row(*b"MY", AS, 2.5, 112.5),      // Malaysia
    row(*b"MZ", AF, -18.25, 35.0),    // Mozambique
    row(*b"NA", AF, -22.0, 17.0),     // Namibia
    row(*b"NC", OC, -21.5, 165.5),    // New Caledonia
    row(*b"NE", AF, 16.0, 8.0),       // Niger
    row(*b"NF", OC, -29.03, 167.95),  // Norfolk Island
    row(*b"NG", AF, 10.0, 8.0),       // Nigeria
    row(*b"NI", NA, 13.0, -85.0),     // Nicaragua
    row(*b"NL", EU, 52.5, 5.75),      // Netherlands
    row(*b"NO", EU, 62.0, 10.0),      // Norway
    row(*b"NP", AS, 28.0, 84.0),      // Nepal
    row(*b"NR", OC, -0.53, 166.92),   // Nauru
    row(*b"NU", OC, -19.03, -169.87), // Niue
    row(*b"NZ", OC, -41.0, 174.0),    // New Zealand
    row(*b"OM", AS, 21.0, 57.0),      // Oman
    row(*b"PA", NA, 9.0, -80.0),      // Panama
    row(*b"PE", SA, -10.0, -76.0),    // Peru
    row(*b"PF", OC, -15.0, -140.0),   // French Polynesia
    row(*b"PG", OC, -6.0, 147.0),     // Papua New Guinea
    row(*b"PH", AS, 13.0, 122.0),     // Philippines
    row(*b"PK", AS, 30.0, 70.0),      // Pakistan
    row(*b"PL", EU, 52.0, 20.0),      // Poland
    row(*b"PM", NA, 46.83, -56.33),   // Saint Pierre and Miquelon
    row(*b"PN", OC, -25.07, -130.1),  // Pitcairn
    row(*b"PR", NA, 18.25, -66.5),    // Puerto Rico
    row(*b"PS", AS, 32.0, 35.25),     // Palestine
    row(*b"PT", EU, 39.5, -8.0),      // Portugal
    row(*b"PW", OC, 7.5, 134.5),      // Palau
    row(*b"PY", SA, -23.0, -58.0),    // Paraguay
    row(*b"QA", AS, 25.5, 51.25),     // Qatar
    row(*b"RE", AF, -21.1, 55.6),     // Reunion
    row(*b"RO", EU, 46.0, 25.0),      // Romania
    row(*b"RS", EU, 44.0, 21.0),      // Serbia
    row(*b"RU", EU, 60.0, 100.0),     // Russia
    row(*b"RW", AF, -2.0, 30.0),      // Rwanda
    row(*b"SA", AS, 25.0, 45.0),      // Saudi Arabia
    row(*b"SB", OC, -8.0, 159.0),     // Solomon Islands
    row(*b"SC", AF, -4.58, 55.67),    // Seychelles
    row(*b"SD", AF, 15.0, 30.0),      // Sudan
    row(*b"SE", EU, 62.0, 15.0),      // Sweden
    row(*b"SG", AS, 1.37, 103.8),     // Singapore
    row(*b"SH", AF, -15.93, -5.7),    // Saint Helena, Ascension and Tristan da Cunha
    row(*b"SI", EU, 46.0, 15.0),      // Slovenia
    row(*b"SJ", EU, 78.0, 20.0),      // Svalbard and Jan Mayen
    row(*b"SK", EU, 48.67, 19.5),     // Slovakia
    row(*b"SL", AF, 8.5, -11.5),      // Sierra Leone
    row(*b"SM", EU, 43.77, 12.42),    // San Marino
    row(*b"SN", AF, 14.0, -14.0),     // Senegal
    row(*b"SO", AF, 10.0, 49.0),      // Somalia
    row(*b"SR", SA, 4.0, -56.0),      // Suriname
    row(*b"SS", AF, 7.0, 30.0),       // South Sudan
    row(*b"ST", AF, 1.0, 7.0),        // Sao Tome and Principe
    row(*b"SV", NA, 13.83, -88.92),   // El Salvador
    row(*b"SX", NA, 18.03, -63.05),   // Sint Maarten (Dutch part)
    row(*b"SY", AS, 35.0, 38.0),      // Syria
    row(*b"SZ", AF, -26.5, 31.5),     // Eswatini
    row(*b"TC", NA, 21.75, -71.58),   // Turks and Caicos Islands
    row(*b"TD", AF, 15.0, 19.0),      // Chad
    row(*b"TF", AN, -49.25, 69.17),   // French Southern Territories
    row(*b"TG", AF, 8.0, 1.17),       // Togo
    row(*b"TH", AS, 15.0, 100.0),     // Thailand
    row(*b"TJ", AS, 39.0, 71.0),      // Tajikistan
    row(*b"TK", OC, -9.0, -172.0),    // Tokelau
    row(*b"TL", OC, -8.83, 125.92),   // Timor-Leste
    row(*b"TM", AS, 40.0, 60.0),      // Turkmenistan
    row(*b"TN", AF, 34.0, 9.0),       // Tunisia
    row(*b"TO", OC, -20.0, -175.0),   // Tonga
    row(*b"TR", AS, 39.0, 35.0),      // Turkey
    row(*b"TT", NA, 11.0, -61.0),     // Trinidad and Tobago
    row(*b"TV", OC, -8.0, 178.0),     // Tuvalu
    row(*b"TW", AS, 23.5, 121.0),     // Taiwan
    row(*b"TZ", AF, -6.0, 35.0),      // Tanzania
    row(*b"UA", EU, 49.0, 32.0),      // Ukraine
    row(*b"UG", AF, 1.0, 32.0),       // Uganda
    row(*b"UM", OC, 19.28, 166.6),    // United States Minor Outlying Islands
    row(*b"US", NA, 38.0, -97.0),     // United States
    row(*b"UY", SA, -33.0, -56.0),    // Uruguay
    row(*b"UZ", AS, 41.0, 64.0),      // Uzbekistan
    row(*b"VA", EU, 41.9, 12.45),     // Holy See
    row(*b"VC", NA, 13.25, -61.2),    // Saint Vincent and the Grenadines
    row(*b"VE", SA, 8.0, -66.0),      // Venezuela
    row(*b"VG", NA, 18.5, -64.5),     // Virgin Islands (British)
    row(*b"VI", NA, 18.34, -64.93),   // Virgin Islands (U.S.)
    row(*b"VN", AS, 16.0, 106.0),     // Viet Nam
    row(*b"VU", OC, -16.0, 167.0),    // Vanuatu
    row(*b"WF", OC, -13.3, -176.2),   // Wallis and Futuna
    row(*b"WS", OC, -13.58, -172.33), // Samoa
    row(*b"XK", EU, 42.58, 20.9),     // Kosovo
    row(*b"YE", AS, 15.0, 48.0),      // Yemen
    row(*b"YT", AF, -12.83, 45.17),   // Mayotte
    row(*b"ZA", AF, -29.0, 24.0),     // South Africa
    row(*b"ZM", AF, -15.0, 30.0),     // Zambia
    row(*b"ZW", AF, -20.0, 30.0),     // Zimbabwe
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn codes_are_sorted_unique_uppercase() {
        for pair in COUNTRIES.windows(2) {
            assert!(
                pair[0].code < pair[1].code,
                "{:?} before {:?}",
                pair[0],
                pair[1]
            );
        }
        for r in &COUNTRIES {
            assert!(r.code.iter().all(u8::is_ascii_uppercase), "{:?}", r.code);
        }
    }

    #[test]
    fn coordinates_are_in_range() {
        for r in &COUNTRIES {
            assert!((-90.0..=90.0).contains(&r.lat), "{:?}", r);
            assert!((-180.0..=180.0).contains(&r.lon), "{:?}", r);
        }
    }

    #[test]
    fn every_continent_has_countries() {
        let seen: BTreeSet<Continent> = COUNTRIES.iter().map(|r| r.continent).collect();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), Continent::ALL);
    }

    #[test]
    fn find_hits_first_last_and_misses() {
        assert_eq!(find(*b"AD").map(|r| r.continent), Some(EU));
        assert_eq!(find(*b"ZW").map(|r| r.continent), Some(AF));
        assert_eq!(find(*b"NA").map(|r| r.continent), Some(AF)); // Namibia, not North America
        assert_eq!(find(*b"US").map(|r| r.continent), Some(NA));
        assert_eq!(find(*b"AU").map(|r| r.continent), Some(OC));
        assert_eq!(find(*b"BR").map(|r| r.continent), Some(SA));
        assert_eq!(find(*b"AQ").map(|r| r.continent), Some(AN));
        assert_eq!(find(*b"JP").map(|r| r.continent), Some(AS));
        assert_eq!(find(*b"ZZ"), None);
        assert_eq!(find(*b"EU"), None);
        assert_eq!(find(*b"gb"), None);
    }

    #[test]
    fn centroids_lie_in_the_right_quarter_of_the_globe() {
        // Cheap plausibility: a sign error or swapped lat/lon shows up here.
        let expect = [
            (*b"GB", 49.0..61.0, -9.0..2.0),
            (*b"US", 25.0..49.0, -125.0..-67.0),
            (*b"AU", -44.0..-10.0, 113.0..154.0),
            (*b"BR", -34.0..5.0, -74.0..-34.0),
            (*b"JP", 24.0..46.0, 122.0..146.0),
            (*b"ZA", -35.0..-22.0, 16.0..33.0),
        ];
        for (code, lat, lon) in expect {
            let r = find(code).unwrap();
            assert!(lat.contains(&r.lat) && lon.contains(&r.lon), "{r:?}");
        }
    }
}
