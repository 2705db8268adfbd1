//! Reading request bodies: JSON → a request type of [`super::model`], with
//! every error naming its field (`field `mask`: must be between 0 and 32`,
//! `field `headers.X-Tenant-ID`: must be a string`).
//!
//! The body is parsed to a JSON value first (`malformed JSON: ...`, `body must
//! be a JSON object`), then deserialized through `serde_path_to_error`, which
//! tells the path of the field at fault, and validated ([`Validate`]). The
//! deserializers in [`de`] word the type errors the way the API always has.

use std::fmt;
use std::net::Ipv4Addr;

use sbc_dataplane::numbers::NumberFormat;
use sbc_dataplane::routing::{MediaEncryption, Profile};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::provisioning::{number_format_named, profile_named};

/// A request refused because of one field: its path (`mask`,
/// `headers.X-Tenant-ID`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name, or its dotted path when nested.
    pub field: String,
    /// What is wrong, e.g. `must be between 0 and 32`.
    pub message: String,
}

impl FieldError {
    /// The error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `field `NAME`: message`, the form every field error of the API takes.
impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Why a request body was refused (the API answers 400 with its text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not JSON at all: `malformed JSON: <serde_json's reason>`.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// JSON, but not an object.
    #[error("body must be a JSON object")]
    NotAnObject,
    /// One field is missing, unknown, of the wrong type or out of range.
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// The checks of a request that serde cannot express (ranges, formats),
/// run after it deserialized.
pub trait Validate {
    /// The first field that is out of range or badly formed.
    fn validate(&self) -> Result<(), FieldError>;
}

/// Reads a request body of type `T` and validates it: the one way the API
/// reads JSON bodies (through `ApiJson`), so every error names its field.
pub fn from_json<T: DeserializeOwned + Validate>(body: &[u8]) -> Result<T, BodyError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))?;
    if !value.is_object() {
        return Err(BodyError::NotAnObject);
    }
    let request: T = serde_path_to_error::deserialize(value).map_err(field_error)?;
    request.validate()?;
    Ok(request)
}

/// Serde's error as a [`FieldError`] on the field it is about. Deserializing
/// from a `Value` gives messages without a position; our own deserializers
/// (`de`) give the message, serde itself only the missing and unknown field
/// errors, whose standard wording is recognised here.
fn field_error(e: serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let path = e.path().to_string();
    let message = e.inner().to_string();
    let quoted = |prefix: &str| {
        let rest = message.strip_prefix(prefix)?;
        rest.split('`').next().map(str::to_string)
    };
    if let Some(name) = quoted("missing field `") {
        // The path is the object's; the field is one level down.
        let field = match path.as_str() {
            "." => name,
            parent => format!("{parent}.{name}"),
        };
        return FieldError::new(field, "is required");
    }
    if let Some(name) = quoted("unknown field `") {
        let field = if path == "." { name } else { path };
        return FieldError::new(field, "unknown field");
    }
    FieldError::new(path, message)
}

/// The text of IPv4 field `field` (trimmed) as an address; how the API
/// reads every IPv4 field, and how `sbcctl` reads one from its arguments.
pub fn parse_ipv4(field: &str, text: &str) -> Result<Ipv4Addr, FieldError> {
    text.trim()
        .parse()
        .map_err(|_| FieldError::new(field, "must be an IPv4 address"))
}

/// The text of profile field `field` (trimmed) as a profile; how the API
/// reads the field `profile`, and how `sbcctl` reads `--profile`.
pub fn parse_profile(field: &str, text: &str) -> Result<Profile, FieldError> {
    profile_named(text.trim()).map_err(|m| FieldError::new(field, m))
}

/// The text of media encryption field `field` (trimmed): `disable`,
/// `allow` or `require`; how the API reads `media_encryption`, and how
/// `sbcctl` reads `--media-encryption`.
pub fn parse_media_encryption(field: &str, text: &str) -> Result<MediaEncryption, FieldError> {
    MediaEncryption::parse(text.trim()).ok_or_else(|| {
        let known: Vec<&str> = MediaEncryption::ALL.iter().map(|m| m.name()).collect();
        FieldError::new(
            field,
            format!(
                "unknown media encryption {:?} ({})",
                text.trim(),
                known.join(", ")
            ),
        )
    })
}

/// The text of number format field `field` (trimmed) as a format; how the
/// API reads the field `number_format`, and how `sbcctl` reads
/// `--number-format`.
pub fn parse_number_format(field: &str, text: &str) -> Result<NumberFormat, FieldError> {
    number_format_named(text.trim()).map_err(|m| FieldError::new(field, m))
}

/// `field` must lie in `min..=max`.
pub(super) fn in_range(field: &str, value: i64, min: i64, max: i64) -> Result<(), FieldError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(FieldError::new(
        field,
        format!("must be between {min} and {max}"),
    ))
}

/// Deserializers that give the API's messages: the value is read as JSON and
/// checked, and the error names what was expected in our words.
pub(super) mod de {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::net::Ipv4Addr;

    use sbc_dataplane::numbers::NumberFormat;
    use sbc_dataplane::routing::{MediaEncryption, Profile};
    use serde::de::{Error, MapAccess, Visitor};
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    /// A JSON integer that fits `i64`.
    pub(in crate::api) fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        Value::deserialize(d)?
            .as_i64()
            .ok_or_else(|| D::Error::custom("must be an integer"))
    }

    /// A JSON string, trimmed.
    pub(in crate::api) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Str::deserialize(d)?.0.trim().to_string())
    }

    /// A JSON string holding a dotted-quad IPv4 address.
    pub(in crate::api) fn ipv4<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Addr, D::Error> {
        super::parse_ipv4("", &text(d)?).map_err(|e| D::Error::custom(e.message))
    }

    /// A profile's name (a JSON string, trimmed), or null for none.
    pub(in crate::api) fn profile<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Profile>, D::Error> {
        match Option::<Str>::deserialize(d)? {
            None => Ok(None),
            Some(Str(name)) => super::parse_profile("", &name)
                .map(Some)
                .map_err(|e| D::Error::custom(e.message)),
        }
    }

    /// A media encryption's name (a JSON string, trimmed).
    pub(in crate::api) fn media_encryption<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<MediaEncryption, D::Error> {
        let Str(name) = Str::deserialize(d)?;
        super::parse_media_encryption("", &name).map_err(|e| D::Error::custom(e.message))
    }

    /// A number format's name (a JSON string, trimmed), or null for none.
    pub(in crate::api) fn number_format<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<NumberFormat>, D::Error> {
        match Option::<Str>::deserialize(d)? {
            None => Ok(None),
            Some(Str(name)) => super::parse_number_format("", &name)
                .map(Some)
                .map_err(|e| D::Error::custom(e.message)),
        }
    }

    /// A JSON integer that fits `i64`, or null for none.
    pub(in crate::api) fn opt_int<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<i64>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| D::Error::custom("must be an integer")),
        }
    }

    /// A gateway state's name: `active`, `inactive` or `disabled`.
    pub(in crate::api) fn admin_state<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<sbc_dataplane::health::AdminState, D::Error> {
        use sbc_dataplane::health::AdminState;
        let name = text(d)?;
        AdminState::parse(&name).ok_or_else(|| {
            let known: Vec<&str> = AdminState::ALL.iter().map(|s| s.name()).collect();
            D::Error::custom(format!("unknown state {name:?} ({})", known.join(", ")))
        })
    }

    /// A JSON string, trimmed, or null for none.
    pub(in crate::api) fn opt_text<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<String>, D::Error> {
        Ok(Option::<Str>::deserialize(d)?.map(|Str(s)| s.trim().to_string()))
    }

    /// A JSON object of strings; a bad value is named by its key.
    pub(in crate::api) fn string_map<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, String>, D::Error> {
        d.deserialize_any(StringMap)
    }

    /// A string as given, refusing other JSON types with our message.
    struct Str(String);

    impl<'de> Deserialize<'de> for Str {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Str, D::Error> {
            match Value::deserialize(d)? {
                Value::String(s) => Ok(Str(s)),
                _ => Err(D::Error::custom("must be a string")),
            }
        }
    }

    struct StringMap;

    /// Anything but an object.
    macro_rules! not_an_object {
        ($($name:ident($($t:ty)?)),*) => {$(
            fn $name<E: Error>(self $(, _: $t)?) -> Result<Self::Value, E> {
                Err(E::custom("must be an object"))
            }
        )*};
    }

    impl<'de> Visitor<'de> for StringMap {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of strings")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, Str(v))) = map.next_entry::<String, Str>()? {
                out.insert(k, v);
            }
            Ok(out)
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(A::Error::custom("must be an object"))
        }

        not_an_object!(
            visit_bool(bool),
            visit_i64(i64),
            visit_u64(u64),
            visit_f64(f64),
            visit_str(&str),
            visit_unit()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::{CarrierIn, GatewayIn, RouteQuery, TenantIn};
    use super::*;

    fn error<T: DeserializeOwned + Validate + fmt::Debug>(body: &str) -> String {
        from_json::<T>(body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn every_error_names_its_field_as_the_api_always_has() {
        let cases = [
            (
                r#"{"ip":"10.0.1","name":"x"}"#,
                "field `ip`: must be an IPv4 address",
            ),
            (r#"{"ip":7,"name":"x"}"#, "field `ip`: must be a string"),
            (
                r#"{"ip":"10.0.1.1","mask":33,"name":"x"}"#,
                "field `mask`: must be between 0 and 32",
            ),
            (
                r#"{"ip":"10.0.1.1","mask":"32","name":"x"}"#,
                "field `mask`: must be an integer",
            ),
            (
                r#"{"ip":"10.0.1.1","mask":1.5,"name":"x"}"#,
                "field `mask`: must be an integer",
            ),
            (
                r#"{"ip":"10.0.1.1","name":" "}"#,
                "field `name`: must not be empty",
            ),
            (r#"{"ip":"10.0.1.1"}"#, "field `name`: is required"),
            (
                r#"{"ip":"10.0.1.1","name":"x","colour":2}"#,
                "field `colour`: unknown field",
            ),
            (
                r#"{"ip":"10.0.1.1","name":"x","group":-1}"#,
                "field `group`: must be between 0 and 2147483647",
            ),
            (
                "{not json",
                "malformed JSON: key must be a string at line 1 column 2",
            ),
            ("[1]", "body must be a JSON object"),
        ];
        for (body, want) in cases {
            assert_eq!(error::<CarrierIn>(body), want, "{body}");
        }
        assert_eq!(
            error::<GatewayIn>(r#"{"destination":"http://x"}"#),
            "field `destination`: not a sip: or sips: URI"
        );
        assert_eq!(
            error::<TenantIn>(r#"{"tenant_id":"a","source_ip":"10.0.1.50","max_cps":1}"#),
            "field `max_concurrent`: is required"
        );
    }

    #[test]
    fn a_nested_field_is_named_by_its_path() {
        assert_eq!(
            error::<RouteQuery>(
                r#"{"source_ip":"10.0.1.1","to":"sip:1@x","headers":{"X-Tenant-ID":5}}"#
            ),
            "field `headers.X-Tenant-ID`: must be a string"
        );
        assert_eq!(
            error::<RouteQuery>(r#"{"source_ip":"10.0.1.1","to":"sip:1@x","headers":[]}"#),
            "field `headers`: must be an object"
        );
        assert_eq!(
            error::<RouteQuery>(r#"{"source_ip":"10.0.1.1","to":"tel:1"}"#),
            "field `to`: must be a sip: URI"
        );
    }

    #[test]
    fn defaults_apply_and_strings_are_trimmed() {
        let c: CarrierIn = from_json(br#"{"ip":" 10.0.1.1 ","name":" c1 "}"#).unwrap();
        assert_eq!(
            (c.ip.to_string(), c.mask, c.name.as_str(), c.group),
            ("10.0.1.1".into(), 32, "c1", 1)
        );
        let g: GatewayIn = from_json(br#"{"destination":"sip:203.0.113.10"}"#).unwrap();
        assert_eq!(
            (g.group, g.priority, g.weight, g.description.as_str()),
            (1, 0, 1, "")
        );
        let r: RouteQuery = from_json(
            br#"{"source_ip":"10.0.1.1","to":"sip:1@x","headers":{"x-tenant-id":" a "}}"#,
        )
        .unwrap();
        assert_eq!(r.tenant_header(), Some(" a "));
    }
}
