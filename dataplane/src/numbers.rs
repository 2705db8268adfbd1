//! A tenant's number rules: the one form its telephone numbers take toward
//! its gateways.
//!
//! LiveKit matches an inbound call to a trunk by the dialled number
//! (`numbers`) and the caller's (`allowed_numbers`), string for string, so
//! every call of a tenant has to reach it with its numbers written one way,
//! whatever each carrier sends. [`NumberRules::normalise`] rewrites one SIP
//! URI user part in four steps:
//!
//! 1. **A number or not.** A user made of digits, `+`, `*` and the visual
//!    separators `-`, `.`, `(`, `)` (RFC 3966 section 5.1.1, `visual-separator`)
//!    and space is a telephone number; anything else (`alice`, `anonymous`, an
//!    escaped `%2B`) is left exactly as it came.
//! 2. **Separators off.** `+1 (415) 555-0123` becomes `+14155550123`.
//! 3. **`strip_prefix`**, a literal prefix (an outside-line `9`, a `*67`),
//!    is removed once when the number starts with it. What is left must be
//!    digits, after at most one leading `+`; otherwise the user is left as it
//!    came (a `*` code that was not stripped, a `+` inside the number, a user
//!    that was nothing but the prefix).
//! 4. **The format** ([`NumberFormat`]): `as_is` stops here, `digits` drops
//!    the `+`, `e164` writes the number as `+` and its ITU-T E.164 digits
//!    (see [`NumberFormat::E164`]).
//!
//! The rules are pure functions over bytes, built once per snapshot and
//! applied by `RouteSnapshot::route` to the Request-URI user and the From
//! user of an inbound call.

use std::borrow::Cow;
use std::fmt;

/// The form a tenant's numbers take toward its gateways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumberFormat {
    /// `+` and the ITU-T E.164 digits (country code, national significant
    /// number; 15 digits at most). After separators and `strip_prefix`:
    ///
    /// - A number with a `+` is kept as it is: `+14155550123`.
    /// - One with an international prefix loses it for the `+`: `00`, the
    ///   prefix ITU-T E.164 recommends, for every country, and `011` for the
    ///   NANP (country code `1`) only, since elsewhere a `011...` number is a
    ///   national one (`0113 496 0000` is Leeds): `0014155550123` and, with
    ///   country code 1, `01114155550123` become `+14155550123`.
    /// - Any other number is national when the tenant has a country code, and
    ///   gets it after its national trunk prefix is dropped:
    ///   - NANP (`1`): the trunk prefix is `1`, and what follows it must be
    ///     the 10 digits of a NANP number: `4155550123` and `14155550123`
    ///     become `+14155550123`; `911` or a 7-digit local `5550123` are left
    ///     as they are.
    ///   - Italy (`39`), San Marino (`378`) and the Vatican (`379`) have no
    ///     trunk prefix: their leading `0` belongs to the number
    ///     (`0612345678` with 39 becomes `+390612345678`).
    ///   - Every other country: one leading `0`, the trunk prefix ITU-T E.164
    ///     recommends, is dropped: `07700900123` with 44 becomes
    ///     `+447700900123`, and so does `7700900123`. A trunk prefix other than
    ///     `0` (Russia's `8`, Hungary's `06`) is `strip_prefix`'s job.
    /// - Without a country code, a number without `+` or `00` is taken for an
    ///   international one whose `+` is missing: `447700900123` becomes
    ///   `+447700900123`.
    ///
    /// A number is only completed into one of 7 to 15 digits that does not
    /// start with `0` (no country code does, and international numbers get
    /// no shorter than Niue's `+683 xxxx`): a short code (`112`, `999`,
    /// `00112`) is left as the earlier steps left it.
    E164,
    /// Digits only, the `+` dropped too: `+1 (415) 555-0123` becomes
    /// `14155550123`; no prefix is added or taken (`0014155550123` stays).
    Digits,
    /// The number as it came, without its separators and `strip_prefix`:
    /// `9-1-415-555-0123` with `strip_prefix` 9 becomes `14155550123`.
    AsIs,
}

impl NumberFormat {
    /// Every format, in the order of their names' documentation.
    pub const ALL: [NumberFormat; 3] =
        [NumberFormat::E164, NumberFormat::Digits, NumberFormat::AsIs];

    /// The format's name in SQL, the API and `sbcctl`: `e164`, `digits` or
    /// `as_is`.
    pub fn name(self) -> &'static str {
        match self {
            NumberFormat::E164 => "e164",
            NumberFormat::Digits => "digits",
            NumberFormat::AsIs => "as_is",
        }
    }

    /// The format named `name` (exactly as [`NumberFormat::name`] writes it).
    pub fn parse(name: &str) -> Option<NumberFormat> {
        NumberFormat::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// A setting of the number rules that cannot be used; names the setting
/// (the API field and SQL column) and says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberRulesError {
    /// `country_code` is not 1 to 3 digits starting with 1 to 9.
    CountryCode,
    /// `country_code` given with a format other than `e164`, which alone
    /// reads it.
    CountryCodeWithoutE164,
    /// `strip_prefix` is not 1 to 16 digits or `*`, after at most one `+`.
    StripPrefix,
    /// `strip_prefix` given without a format: no format means numbers pass
    /// untouched.
    StripPrefixWithoutFormat,
}

impl NumberRulesError {
    /// The setting at fault: `country_code` or `strip_prefix`.
    pub fn field(self) -> &'static str {
        match self {
            NumberRulesError::CountryCode | NumberRulesError::CountryCodeWithoutE164 => {
                "country_code"
            }
            NumberRulesError::StripPrefix | NumberRulesError::StripPrefixWithoutFormat => {
                "strip_prefix"
            }
        }
    }

    /// What is wrong with it, in the API's words.
    pub fn message(self) -> &'static str {
        match self {
            NumberRulesError::CountryCode => {
                "must be 1 to 3 digits not starting with 0 (an E.164 country code, e.g. \"1\" or \"44\")"
            }
            NumberRulesError::CountryCodeWithoutE164 => {
                "is used only with number_format \"e164\""
            }
            NumberRulesError::StripPrefix => {
                "must be 1 to 16 digits or '*', optionally after a leading '+'"
            }
            NumberRulesError::StripPrefixWithoutFormat => {
                "needs a number_format (\"as_is\" to strip the prefix only)"
            }
        }
    }
}

/// `field `NAME`: message`, as the API words field errors.
impl fmt::Display for NumberRulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field(), self.message())
    }
}

impl std::error::Error for NumberRulesError {}

/// A tenant's number rules: its format, its country code (`e164` only) and
/// the prefix to strip first. Built only through [`NumberRules::new`] or
/// [`NumberRules::from_settings`], so every value it holds is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRules {
    format: NumberFormat,
    country_code: Option<String>,
    strip_prefix: Option<String>,
}

/// Countries without a national trunk prefix whose numbers may start with
/// `0`, which then belongs to the number (Italy, San Marino, the Vatican).
const LEADING_ZERO_KEPT: [&str; 3] = ["39", "378", "379"];

/// The shortest number [`NumberFormat::E164`] completes, in digits.
const E164_MIN_DIGITS: usize = 7;
/// The longest, as ITU-T E.164 allows.
const E164_MAX_DIGITS: usize = 15;

impl NumberRules {
    /// The rules of a tenant with a format; `country_code` (1 to 3 digits, not
    /// starting with 0) is for `e164` only, `strip_prefix` (1 to 16 digits or
    /// `*`, after at most one leading `+`) for every format.
    pub fn new(
        format: NumberFormat,
        country_code: Option<&str>,
        strip_prefix: Option<&str>,
    ) -> Result<NumberRules, NumberRulesError> {
        if let Some(cc) = country_code {
            let digits = cc.bytes().all(|b| b.is_ascii_digit());
            if !digits || !(1..=3).contains(&cc.len()) || cc.starts_with('0') {
                return Err(NumberRulesError::CountryCode);
            }
            if format != NumberFormat::E164 {
                return Err(NumberRulesError::CountryCodeWithoutE164);
            }
        }
        if let Some(p) = strip_prefix {
            let body = p.strip_prefix('+').unwrap_or(p);
            let ok = body.bytes().all(|b| b.is_ascii_digit() || b == b'*');
            if !ok || !(1..=16).contains(&p.len()) || body.is_empty() {
                return Err(NumberRulesError::StripPrefix);
            }
        }
        Ok(NumberRules {
            format,
            country_code: country_code.map(str::to_string),
            strip_prefix: strip_prefix.map(str::to_string),
        })
    }

    /// The rules a tenant's three settings describe: none without a format
    /// (numbers pass untouched), in which case neither of the others may be
    /// set; else as [`NumberRules::new`].
    pub fn from_settings(
        format: Option<NumberFormat>,
        country_code: Option<&str>,
        strip_prefix: Option<&str>,
    ) -> Result<Option<NumberRules>, NumberRulesError> {
        match format {
            Some(f) => NumberRules::new(f, country_code, strip_prefix).map(Some),
            None => {
                if let Some(cc) = country_code {
                    // The format check of `new`, after its own.
                    NumberRules::new(NumberFormat::Digits, Some(cc), None)?;
                }
                if strip_prefix.is_some() {
                    return Err(NumberRulesError::StripPrefixWithoutFormat);
                }
                Ok(None)
            }
        }
    }

    /// The format.
    pub fn format(&self) -> NumberFormat {
        self.format
    }

    /// The country code `e164` gives national numbers, if any.
    pub fn country_code(&self) -> Option<&str> {
        self.country_code.as_deref()
    }

    /// The prefix removed first, if any.
    pub fn strip_prefix(&self) -> Option<&str> {
        self.strip_prefix.as_deref()
    }

    /// `user` (a SIP URI user part without its `;` parameters) in the
    /// tenant's form, by the steps of the module documentation; borrowed
    /// when nothing changes. A user that is not a telephone number comes
    /// back as it is.
    ///
    /// With `e164` and country code 44, `0044 20 7946 0958` and
    /// `020-7946-0958` become `+442079460958`; `alice` stays `alice`.
    pub fn normalise<'a>(&self, user: &'a [u8]) -> Cow<'a, [u8]> {
        let number_chars = |b: &u8| b.is_ascii_digit() || b"+*-.() ".contains(b);
        if user.is_empty() || !user.iter().all(number_chars) {
            return Cow::Borrowed(user);
        }
        let mut number: Vec<u8> = user
            .iter()
            .copied()
            .filter(|b| !b"-.() ".contains(b))
            .collect();
        if let Some(p) = self.strip_prefix.as_deref() {
            if number.starts_with(p.as_bytes()) {
                number.drain(..p.len());
            }
        }
        let digits = number.strip_prefix(b"+").unwrap_or(&number);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Cow::Borrowed(user);
        }
        let out = match self.format {
            NumberFormat::AsIs => number,
            NumberFormat::Digits => digits.to_vec(),
            NumberFormat::E164 => self.e164(&number).unwrap_or(number),
        };
        if out == user {
            Cow::Borrowed(user)
        } else {
            Cow::Owned(out)
        }
    }

    /// `number` (digits after at most one `+`) as `+` and its E.164 digits,
    /// or `None` when it cannot be completed (see [`NumberFormat::E164`]).
    fn e164(&self, number: &[u8]) -> Option<Vec<u8>> {
        if number.starts_with(b"+") {
            return Some(number.to_vec());
        }
        let cc = self.country_code.as_deref();
        let nanp = cc == Some("1");
        if let Some(rest) = number.strip_prefix(b"00") {
            return plus(&[rest]);
        }
        if nanp {
            if let Some(rest) = number.strip_prefix(b"011") {
                return plus(&[rest]);
            }
        }
        match cc {
            None => plus(&[number]),
            Some(cc) if nanp => {
                let national = number.strip_prefix(b"1").unwrap_or(number);
                if national.len() != 10 {
                    return None;
                }
                plus(&[cc.as_bytes(), national])
            }
            Some(cc) if LEADING_ZERO_KEPT.contains(&cc) => plus(&[cc.as_bytes(), number]),
            Some(cc) => {
                let national = number.strip_prefix(b"0").unwrap_or(number);
                if national.is_empty() {
                    return None;
                }
                plus(&[cc.as_bytes(), national])
            }
        }
    }
}

/// `+` and the concatenated `parts`, when they make 7 to 15 digits that do
/// not start with `0`.
fn plus(parts: &[&[u8]]) -> Option<Vec<u8>> {
    let digits: Vec<u8> = parts.concat();
    let len_ok = (E164_MIN_DIGITS..=E164_MAX_DIGITS).contains(&digits.len());
    if !len_ok || digits.first() == Some(&b'0') {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() + 1);
    out.push(b'+');
    out.extend_from_slice(&digits);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(format: NumberFormat, cc: Option<&str>, strip: Option<&str>) -> NumberRules {
        NumberRules::new(format, cc, strip).unwrap()
    }

    /// Each input against its expected output under `r`.
    fn check(r: &NumberRules, table: &[(&str, &str)]) {
        for (input, want) in table {
            let got = r.normalise(input.as_bytes());
            assert_eq!(
                String::from_utf8_lossy(&got),
                *want,
                "{input:?} under {r:?}"
            );
        }
    }

    #[test]
    fn e164_with_the_nanp_country_code() {
        check(
            &rules(NumberFormat::E164, Some("1"), None),
            &[
                ("4155550123", "+14155550123"),
                ("14155550123", "+14155550123"),
                ("+14155550123", "+14155550123"),
                ("0014155550123", "+14155550123"),
                ("01114155550123", "+14155550123"),
                ("011442079460958", "+442079460958"),
                ("+1 (415) 555-0123", "+14155550123"),
                ("(415) 555-0123", "+14155550123"),
                ("1-415-555-0123", "+14155550123"),
                ("415.555.0123", "+14155550123"),
                // Not 10 digits after the trunk prefix: left (separators off).
                ("911", "911"),
                ("555-0123", "5550123"),
                ("114155550123", "114155550123"),
                // A + number is the sender's: kept as it is.
                ("+442079460958", "+442079460958"),
                ("alice", "alice"),
                ("anonymous", "anonymous"),
                ("*67", "*67"),
                ("+1-415-555-0123x", "+1-415-555-0123x"),
                ("%2B14155550123", "%2B14155550123"),
                ("", ""),
            ],
        );
    }

    #[test]
    fn e164_with_a_zero_trunk_prefix() {
        check(
            &rules(NumberFormat::E164, Some("44"), None),
            &[
                ("07700900123", "+447700900123"),
                ("7700900123", "+447700900123"),
                ("0044 7700 900123", "+447700900123"),
                ("+447700900123", "+447700900123"),
                ("020 7946 0958", "+442079460958"),
                // 011 is no international prefix outside the NANP: Leeds.
                ("01134960000", "+441134960000"),
                // Short codes are not completed.
                ("999", "999"),
                ("112", "112"),
                ("00112", "00112"),
                ("0", "0"),
                // Beyond 15 digits: left.
                ("0770090012345678", "0770090012345678"),
            ],
        );
        check(
            &rules(NumberFormat::E164, Some("91"), None),
            &[
                ("09876543210", "+919876543210"),
                ("9876543210", "+919876543210"),
            ],
        );
    }

    #[test]
    fn e164_keeps_the_italian_leading_zero() {
        check(
            &rules(NumberFormat::E164, Some("39"), None),
            &[
                ("0612345678", "+390612345678"),
                ("3123456789", "+393123456789"),
                ("0039 06 1234 5678", "+390612345678"),
            ],
        );
    }

    #[test]
    fn e164_without_a_country_code_takes_numbers_for_international() {
        check(
            &rules(NumberFormat::E164, None, None),
            &[
                ("447700900123", "+447700900123"),
                ("14155550123", "+14155550123"),
                ("00447700900123", "+447700900123"),
                ("+447700900123", "+447700900123"),
                // No country code says what 011 or a national 0 is.
                ("01114155550123", "01114155550123"),
                ("07700900123", "07700900123"),
                ("112", "112"),
            ],
        );
    }

    #[test]
    fn strip_prefix_comes_first() {
        check(
            &rules(NumberFormat::E164, Some("1"), Some("9")),
            &[
                ("914155550123", "+14155550123"),
                ("9-1-415-555-0123", "+14155550123"),
                ("94155550123", "+14155550123"),
                // Once only, and only at the start.
                ("99", "9"),
                ("4155550123", "+14155550123"),
                ("+19", "+19"),
                // Nothing left but the prefix: not a number.
                ("9", "9"),
            ],
        );
        check(
            &rules(NumberFormat::AsIs, None, Some("*67")),
            &[
                ("*674155550123", "4155550123"),
                ("*67 415 555 0123", "4155550123"),
                ("*68415", "*68415"),
            ],
        );
        check(
            &rules(NumberFormat::Digits, None, Some("+1")),
            &[("+14155550123", "4155550123"), ("+44207", "44207")],
        );
    }

    #[test]
    fn digits_and_as_is() {
        check(
            &rules(NumberFormat::Digits, None, None),
            &[
                ("+1 (415) 555-0123", "14155550123"),
                ("+14155550123", "14155550123"),
                ("0014155550123", "0014155550123"),
                ("4155550123", "4155550123"),
                ("alice", "alice"),
                ("1+2", "1+2"),
            ],
        );
        check(
            &rules(NumberFormat::AsIs, None, None),
            &[
                ("+1 (415) 555-0123", "+14155550123"),
                ("(415) 555-0123", "4155550123"),
                ("0014155550123", "0014155550123"),
                ("bob.smith", "bob.smith"),
            ],
        );
    }

    #[test]
    fn unchanged_users_are_borrowed() {
        let r = rules(NumberFormat::E164, Some("1"), None);
        assert!(matches!(r.normalise(b"+14155550123"), Cow::Borrowed(_)));
        assert!(matches!(r.normalise(b"alice"), Cow::Borrowed(_)));
        assert!(matches!(r.normalise(b"4155550123"), Cow::Owned(_)));
    }

    #[test]
    fn settings_are_checked_and_name_their_field() {
        use NumberFormat::{AsIs, Digits, E164};
        for cc in ["1", "44", "358"] {
            assert!(NumberRules::new(E164, Some(cc), None).is_ok(), "{cc}");
        }
        for cc in ["", "0", "044", "1234", "+1", "4a", " 1"] {
            assert_eq!(
                NumberRules::new(E164, Some(cc), None),
                Err(NumberRulesError::CountryCode),
                "{cc:?}"
            );
        }
        assert_eq!(
            NumberRules::new(Digits, Some("1"), None),
            Err(NumberRulesError::CountryCodeWithoutE164)
        );
        for p in ["9", "*67", "+1", "0123456789012345"] {
            assert!(NumberRules::new(AsIs, None, Some(p)).is_ok(), "{p}");
        }
        for p in ["", "+", "9a", "01234567890123456", "1+", "#31#", "++1"] {
            assert_eq!(
                NumberRules::new(AsIs, None, Some(p)),
                Err(NumberRulesError::StripPrefix),
                "{p:?}"
            );
        }
        assert_eq!(NumberRules::from_settings(None, None, None), Ok(None));
        assert_eq!(
            NumberRules::from_settings(None, Some("1"), None),
            Err(NumberRulesError::CountryCodeWithoutE164)
        );
        assert_eq!(
            NumberRules::from_settings(None, Some("x"), None),
            Err(NumberRulesError::CountryCode)
        );
        let e = NumberRules::from_settings(None, None, Some("9")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `strip_prefix`: needs a number_format (\"as_is\" to strip the prefix only)"
        );
        let r = NumberRules::from_settings(Some(E164), Some("44"), Some("9"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.format(), r.country_code(), r.strip_prefix()),
            (E164, Some("44"), Some("9"))
        );
    }

    #[test]
    fn format_names_round_trip() {
        for f in NumberFormat::ALL {
            assert_eq!(NumberFormat::parse(f.name()), Some(f));
        }
        assert_eq!(NumberFormat::parse("E164"), None);
        assert_eq!(NumberFormat::parse("as-is"), None);
    }
}
