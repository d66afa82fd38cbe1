//! The records every instance holds: Accounts and Contacts generated from the instance's name, the same
//! every run (names, industries, cities and people drawn by a hash from short lists; ids shaped like
//! UUIDs; `date_modified` strictly decreasing with the index, so the generated order is Sugar's default
//! `date_modified` descending).

use super::json::J;
use chrono::{DateTime, Duration, TimeZone, Utc};

/// Accounts and Contacts of `instance`, newest first; each contact is linked to one of the accounts.
pub(crate) fn generate(instance: &str, accounts: usize, contacts: usize) -> (Vec<J>, Vec<J>) {
    let accounts: Vec<(J, String)> = (0..accounts).map(|i| account(instance, i)).collect();
    let contacts = (0..contacts)
        .map(|i| contact(instance, i, &accounts))
        .collect();
    (
        accounts.into_iter().map(|(record, _)| record).collect(),
        contacts,
    )
}

const NAME_STARTS: &[&str] = &[
    "Northwind",
    "Blue Ridge",
    "Summit",
    "Harbor",
    "Redwood",
    "Silverline",
    "Pioneer",
    "Granite",
    "Evergreen",
    "Lakeside",
    "Ironclad",
    "Sunrise",
    "Cobalt",
    "Maple",
    "Keystone",
    "Bright",
    "Atlas",
    "Riverbend",
    "Crescent",
    "Falcon",
    "Orchid",
    "Union",
    "Westfield",
    "Copper",
];
const NAME_CORES: &[&str] = &[
    "Logistics",
    "Foods",
    "Analytics",
    "Energy",
    "Health",
    "Media",
    "Systems",
    "Motors",
    "Textiles",
    "Capital",
    "Labs",
    "Freight",
    "Pharma",
    "Robotics",
    "Outfitters",
    "Telecom",
    "Builders",
    "Insurance",
    "Hotels",
    "Software",
];
const NAME_ENDS: &[&str] = &["Inc", "LLC", "Ltd", "Group", "Corp", "GmbH", "SA", "& Co"];
/// Sugar's `industry_dom`.
const INDUSTRIES: &[&str] = &[
    "Apparel",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Entertainment",
    "Environmental",
    "Finance",
    "Government",
    "Healthcare",
    "Hospitality",
    "Insurance",
    "Machinery",
    "Manufacturing",
    "Media",
    "Not For Profit",
    "Recreation",
    "Retail",
    "Shipping",
    "Technology",
    "Telecommunications",
    "Transportation",
    "Utilities",
    "Other",
];
/// Sugar's `account_type_dom`.
const ACCOUNT_TYPES: &[&str] = &[
    "Analyst",
    "Competitor",
    "Customer",
    "Integrator",
    "Investor",
    "Partner",
    "Press",
    "Prospect",
    "Reseller",
    "Other",
];
const CITIES: &[(&str, &str)] = &[
    ("Berlin", "Germany"),
    ("Lyon", "France"),
    ("Austin", "USA"),
    ("Denver", "USA"),
    ("Toronto", "Canada"),
    ("Manchester", "United Kingdom"),
    ("Osaka", "Japan"),
    ("Melbourne", "Australia"),
    ("Rotterdam", "Netherlands"),
    ("Porto", "Portugal"),
    ("Cork", "Ireland"),
    ("Chicago", "USA"),
    ("São Paulo", "Brazil"),
    ("Zürich", "Switzerland"),
    ("Seattle", "USA"),
    ("Madrid", "Spain"),
];
const FIRST_NAMES: &[&str] = &[
    "Ada", "Ben", "Carla", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Keiko",
    "Liam", "Maya", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera",
    "Wen", "Yusuf", "Zoë",
];
const LAST_NAMES: &[&str] = &[
    "Abbott",
    "Berg",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "García",
    "Hughes",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "O'Neill",
    "Patel",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Urban",
    "Varga",
    "Walsh",
    "Young",
    "Zhang",
];
const TITLES: &[&str] = &[
    "CEO",
    "CFO",
    "Head of IT",
    "Purchasing Manager",
    "Sales Director",
    "Office Manager",
    "Engineer",
    "Consultant",
    "VP Operations",
    "Accountant",
];

/// A stable 32-hex-digit hash (FNV-1a, 128 bit): Sugar's `_hash` is an md5 of the metadata.
pub(crate) fn fnv_hex(input: &str) -> String {
    format!("{:032x}", fnv(input))
}

/// FNV-1a, 128 bit: stable across runs and platforms.
pub(crate) fn fnv(input: &str) -> u128 {
    let mut hash: u128 = 0x6c62272e07bb014262b821756295c58d;
    for byte in input.bytes() {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(0x0000000001000000000000000000013B);
    }
    hash
}

/// A UUID-shaped id (8-4-4-4-12 hex digits) from a hash.
fn uuid_like(hash: u128) -> String {
    let hex = format!("{hash:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn pick<T: Copy>(list: &[T], hash: u128, shift: u32) -> T {
    list[((hash >> shift) % list.len() as u128) as usize]
}

fn sugar_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

/// The newest record's `date_modified`; older ones go back from it.
fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 30, 17, 45, 0)
        .single()
        .unwrap_or_default()
}

/// The `i`-th instant going back from [`epoch`] by `step` seconds each, less a jitter below `step`
/// (strictly decreasing in `i`), and a creation date up to 400 days before it.
fn dates(i: usize, hash: u128, step: u64) -> (String, String) {
    let back = i as u64 * step + (hash >> 64) as u64 % (step - 1);
    let modified = epoch() - Duration::seconds(back as i64);
    let entered = modified - Duration::seconds(((hash >> 32) as u64 % (400 * 86_400)) as i64);
    (sugar_time(entered), sugar_time(modified))
}

/// `("Blue Ridge", "Foods")` → `blueridge-foods.example.com`.
fn domain(start: &str, core: &str) -> String {
    let word = |w: &str| {
        w.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase()
    };
    format!("{}-{}.example.com", word(start), word(core))
}

fn account(instance: &str, i: usize) -> (J, String) {
    let h = fnv(&format!("{instance}/Accounts/{i}"));
    let (start, core, end) = (
        pick(NAME_STARTS, h, 0),
        pick(NAME_CORES, h, 8),
        pick(NAME_ENDS, h, 16),
    );
    let name = format!("{start} {core} {end}");
    let website = domain(start, core);
    let (city, country) = pick(CITIES, h, 24);
    let (entered, modified) = dates(i, h, 8000);
    let record = J::obj([
        ("id", J::s(uuid_like(h))),
        ("name", J::s(name)),
        ("date_entered", J::s(entered)),
        ("date_modified", J::s(modified)),
        ("account_type", J::s(pick(ACCOUNT_TYPES, h, 32))),
        ("industry", J::s(pick(INDUSTRIES, h, 40))),
        (
            "phone_office",
            J::s(format!(
                "+1 555 01{:02} {:04}",
                (h >> 48) % 100,
                (h >> 56) % 10_000
            )),
        ),
        ("website", J::s(format!("https://www.{website}"))),
        ("billing_address_city", J::s(city)),
        ("billing_address_country", J::s(country)),
        ("_module", J::s("Accounts")),
    ]);
    (record, website)
}

fn contact(instance: &str, i: usize, accounts: &[(J, String)]) -> J {
    let h = fnv(&format!("{instance}/Contacts/{i}"));
    let (first, last) = (pick(FIRST_NAMES, h, 0), pick(LAST_NAMES, h, 8));
    let (account_id, account_name, domain) = match accounts {
        [] => (String::new(), String::new(), "example.com".to_string()),
        _ => {
            let (account, domain) = &accounts[((h >> 16) % accounts.len() as u128) as usize];
            let text = |key| match account.get(key) {
                Some(J::Str(s)) => s.clone(),
                _ => String::new(),
            };
            (text("id"), text("name"), domain.clone())
        }
    };
    let local: String = format!("{first}.{last}")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect::<String>()
        .to_ascii_lowercase();
    let email = format!("{local}@{domain}");
    let (entered, modified) = dates(i, h, 3600);
    J::obj([
        ("id", J::s(uuid_like(h))),
        ("name", J::s(format!("{first} {last}"))),
        ("first_name", J::s(first)),
        ("last_name", J::s(last)),
        ("date_entered", J::s(entered)),
        ("date_modified", J::s(modified)),
        ("title", J::s(pick(TITLES, h, 24))),
        (
            "phone_work",
            J::s(format!(
                "+1 555 02{:02} {:04}",
                (h >> 32) % 100,
                (h >> 40) % 10_000
            )),
        ),
        (
            "email",
            J::Arr(vec![J::obj([
                ("email_address", J::s(email.clone())),
                ("primary_address", J::Bool(true)),
                ("reply_to_address", J::Bool(false)),
                ("invalid_email", J::Bool(false)),
                ("opt_out", J::Bool(false)),
            ])]),
        ),
        ("email1", J::s(email)),
        ("account_id", J::s(account_id)),
        ("account_name", J::s(account_name)),
        ("primary_address_city", J::s(pick(CITIES, h, 56).0)),
        ("_module", J::s("Contacts")),
    ])
}
