//! Layers of configuration fed to one `Deserialize`: values from a TOML
//! file keep their TOML types, values from `MERIDIAN_<KEY>` variables are
//! text that becomes whatever the field asks for (a list splits on commas,
//! a number parses, an option is present). No key list is kept by hand: the
//! struct's own fields decide, so every field is reachable both ways.

use serde::Deserialize;
use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, Error as _, IntoDeserializer, Visitor};

type Error = toml::de::Error;

/// One key's value and where it came from.
#[derive(Debug, Clone)]
pub(super) enum Layer {
    /// From the file (or the caller's defaults).
    File(toml::Value),
    /// From the variable `name`.
    Env {
        /// The variable's name, for messages.
        name: String,
        /// Its text.
        value: String,
    },
}

/// The field names `T` deserializes (its `deserialize_struct` call says).
pub(super) fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe;
    #[derive(Debug)]
    struct Fields(&'static [&'static str]);
    impl std::fmt::Display for Fields {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field probe")
        }
    }
    impl std::error::Error for Fields {}
    impl de::Error for Fields {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Self(&[])
        }
    }
    impl<'de> de::Deserializer<'de> for Probe {
        type Error = Fields;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
            Err(Fields(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Fields> {
            Err(Fields(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Fields(fields)) => fields,
        Ok(_) => &[],
    }
}

/// `T` from the layered entries.
pub(super) fn deserialize<T: de::DeserializeOwned>(entries: Vec<(String, Layer)>) -> Result<T, Error> {
    let map =
        MapDeserializer::new(entries.into_iter().map(|(key, layer)| (key.clone(), Keyed { key, layer })));
    T::deserialize(map)
}

/// The values of the `secret_keys` entries, as text, longest first, for
/// redacting error messages.
pub(super) fn secret_values(entries: &[(String, Layer)], secret_keys: &[&str]) -> Vec<String> {
    fn collect(value: &toml::Value, out: &mut Vec<String>) {
        match value {
            toml::Value::Array(items) => items.iter().for_each(|item| collect(item, out)),
            toml::Value::Table(table) => table.values().for_each(|item| collect(item, out)),
            toml::Value::String(text) => out.push(text.clone()),
            other => out.push(other.to_string()),
        }
    }
    let mut values = Vec::new();
    for (key, layer) in entries {
        if !secret_keys.contains(&key.as_str()) {
            continue;
        }
        match layer {
            Layer::File(value) => collect(value, &mut values),
            Layer::Env { value, .. } => {
                values.push(value.clone());
                values.extend(value.split(',').map(|part| part.trim().to_owned()));
            }
        }
    }
    values.retain(|v| v.len() >= 4);
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values
}

/// A value that names its key (or variable) in every error.
struct Keyed {
    key: String,
    layer: Layer,
}

impl<'de> IntoDeserializer<'de, Error> for Keyed {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// A value that is there is `Some`, and a newtype is what it wraps, in
/// either layer.
macro_rules! present_and_transparent {
    () => {
        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_some(self)
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_newtype_struct(self)
        }
    };
}

/// Forwards each `deserialize_*` method to the layer's own deserializer,
/// naming the key (and the variable) in its errors.
macro_rules! forward_to_layer {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Error> {
            let Self { key, layer } = self;
            match layer {
                Layer::File(value) => {
                    value.$method($($arg,)* visitor).map_err(|e| Error::custom(format!("{key}: {e}")))
                }
                Layer::Env { name, value } => EnvText(&value)
                    .$method($($arg,)* visitor)
                    .map_err(|e| Error::custom(format!("{name} ({key}): {e}"))),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Keyed {
    type Error = Error;

    present_and_transparent!();

    forward_to_layer! {
        deserialize_any(), deserialize_bool(), deserialize_i8(), deserialize_i16(), deserialize_i32(),
        deserialize_i64(), deserialize_i128(), deserialize_u8(), deserialize_u16(), deserialize_u32(),
        deserialize_u64(), deserialize_u128(), deserialize_f32(), deserialize_f64(), deserialize_char(),
        deserialize_str(), deserialize_string(), deserialize_bytes(), deserialize_byte_buf(),
        deserialize_unit(), deserialize_seq(), deserialize_map(), deserialize_identifier(),
        deserialize_ignored_any(),
        deserialize_unit_struct(name: &'static str),
        deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_struct(name: &'static str, fields: &'static [&'static str]),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
    }
}

/// `deserialize_*` methods that parse the text as a whole number.
macro_rules! numbers {
    ($($method:ident => $visit:ident($ty:ty)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.$visit(self.number::<$ty>()?)
        }
    )*};
}

/// A variable's text, read as the field asks: lists are comma-separated,
/// numbers and booleans parse, anything else is the text itself.
struct EnvText<'a>(&'a str);

impl EnvText<'_> {
    fn number<N: std::str::FromStr>(&self) -> Result<N, Error> {
        self.0.trim().parse().map_err(|_| Error::custom(format!("{:?} is not a whole number", self.0)))
    }
}

impl<'de> de::Deserializer<'de> for EnvText<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str(self.0)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.trim() {
            "true" | "1" | "yes" => visitor.visit_bool(true),
            "false" | "0" | "no" => visitor.visit_bool(false),
            other => Err(Error::custom(format!("{other:?} is not true or false"))),
        }
    }

    numbers! {
        deserialize_u8 => visit_u64(u64), deserialize_u16 => visit_u64(u64),
        deserialize_u32 => visit_u64(u64), deserialize_u64 => visit_u64(u64),
        deserialize_i8 => visit_i64(i64), deserialize_i16 => visit_i64(i64),
        deserialize_i32 => visit_i64(i64), deserialize_i64 => visit_i64(i64),
    }

    present_and_transparent!();

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let parts = self.0.split(',').map(str::trim).filter(|part| !part.is_empty()).map(EnvText);
        SeqDeserializer::new(parts).deserialize_seq(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_enum(self.0.trim().into_deserializer())
    }

    fn deserialize_map<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(Error::custom("a table cannot be set from a variable; use the file (or its `_file` key)"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 f32 f64 char str string bytes byte_buf unit unit_struct tuple tuple_struct identifier ignored_any
    }
}

impl<'de, 'a> IntoDeserializer<'de, Error> for EnvText<'a> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}
