//! JSON lines: one object per line, read straight into a record by schema,
//! without building a JSON tree first.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Path, missing, not_null, timestamp};
use crate::expr::{Kind, Record, RecordType, Type, Value};
use crate::time::EventTime;

/// Reads `line` as a JSON object of the fields of `layout`; `scratch`
/// holds the values while they are read.
pub(super) fn decode(
    line: &str,
    layout: &RecordType,
    scratch: &mut Vec<Value>,
) -> Result<Record, String> {
    let mut deserializer = serde_json::Deserializer::from_str(line);
    let record = RecordSeed {
        layout,
        path: None,
        scratch: Some(scratch),
    }
    .deserialize(&mut deserializer)
    .and_then(|record| deserializer.end().map(|()| record));
    record.map_err(|error| reason(&error))
}

/// A reason for people: `serde_json`'s message, with the column but without
/// the line (always 1 here).
fn reason(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let location = format!(" at line {} column {}", error.line(), error.column());
    let message = text.strip_suffix(&location).unwrap_or(&text);
    let column = error.column().max(1);
    match error.classify() {
        serde_json::error::Category::Data => format!("{message} (column {column})"),
        _ => format!("not JSON: {message} at column {column}"),
    }
}

/// A record of `layout`. The top-level record reuses `scratch`.
struct RecordSeed<'a, 's> {
    layout: &'a RecordType,
    path: Option<&'a Path<'a>>,
    scratch: Option<&'s mut Vec<Value>>,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, '_> {
    type Value = Record;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Record, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, '_> {
    type Value = Record;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path {
            Some(path) => write!(f, "an object for `{path}`"),
            None => f.write_str("a JSON object"),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
        let fields = &self.layout.fields;
        let mut own = Vec::new();
        let values = self.scratch.unwrap_or(&mut own);
        values.clear();
        values.resize(fields.len(), Value::Null);
        let mut given = Given::new(fields.len());
        while let Some(index) = map.next_key_seed(FieldSeed(self.layout))? {
            let Some(index) = index else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let field = &fields[index];
            let path = Path {
                name: &field.name,
                parent: self.path,
            };
            if given.contains(index) {
                return Err(de::Error::custom(format!("field `{path}` is given twice")));
            }
            given.insert(index);
            values[index] = map.next_value_seed(ValueSeed {
                ty: &field.ty,
                path: &path,
            })?;
        }
        if let Some(field) = fields.iter().enumerate().find_map(|(index, field)| {
            (!given.contains(index) && !field.ty.nullable).then_some(field)
        }) {
            let path = Path {
                name: &field.name,
                parent: self.path,
            };
            return Err(de::Error::custom(missing(path, &field.ty)));
        }
        Ok(values.drain(..).collect())
    }
}

/// Which fields of a record were given: bits in a word for the usual
/// schema, a vector beyond 64 fields.
enum Given {
    Word(u64),
    Many(Vec<bool>),
}

impl Given {
    fn new(fields: usize) -> Self {
        if fields <= 64 {
            Self::Word(0)
        } else {
            Self::Many(vec![false; fields])
        }
    }

    fn contains(&self, index: usize) -> bool {
        match self {
            Self::Word(bits) => bits & (1 << index) != 0,
            Self::Many(given) => given[index],
        }
    }

    fn insert(&mut self, index: usize) {
        match self {
            Self::Word(bits) => *bits |= 1 << index,
            Self::Many(given) => given[index] = true,
        }
    }
}

/// An object key: the index of the field it names, `None` for a field the
/// schema does not declare.
struct FieldSeed<'a>(&'a RecordType);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldSeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Option<usize>, E> {
        Ok(self.0.fields.iter().position(|field| field.name == name))
    }
}

/// The value of one field, of type `ty`.
struct ValueSeed<'a> {
    ty: &'a Type,
    path: &'a Path<'a>,
}

impl ValueSeed<'_> {
    fn wrong<E: de::Error>(&self, found: fmt::Arguments<'_>) -> E {
        E::custom(format!("`{}` is `{}`, found {found}", self.path, self.ty))
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a `{}` for `{}`", self.ty, self.path)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        if self.ty.nullable {
            Ok(Value::Null)
        } else {
            Err(E::custom(not_null(*self.path, self.ty)))
        }
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        match self.ty.kind {
            Kind::Bool => Ok(Value::Bool(b)),
            _ => Err(self.wrong(format_args!("`{b}`"))),
        }
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        match self.ty.kind {
            Kind::Int => Ok(Value::Int(i)),
            #[allow(clippy::cast_precision_loss)] // The nearest float, as JSON readers do.
            Kind::Float => Ok(Value::Float(i as f64)),
            Kind::Timestamp => Ok(Value::Timestamp(EventTime::from_millis(i))),
            Kind::String => {
                Err(self.wrong(format_args!("the number `{i}`; quote it to make it text")))
            }
            _ => Err(self.wrong(format_args!("the number `{i}`"))),
        }
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        match i64::try_from(u) {
            Ok(i) => self.visit_i64(i),
            #[allow(clippy::cast_precision_loss)] // The nearest float, as JSON readers do.
            Err(_) if self.ty.kind == Kind::Float => Ok(Value::Float(u as f64)),
            Err(_) => Err(self.wrong(format_args!(
                "`{u}`, which is beyond a 64-bit signed integer"
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Value, E> {
        match self.ty.kind {
            Kind::Float => Ok(Value::Float(x)),
            Kind::Int | Kind::Timestamp => {
                Err(self.wrong(format_args!("`{x}`, which is not a whole number")))
            }
            _ => Err(self.wrong(format_args!("the number `{x}`"))),
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Value, E> {
        match self.ty.kind {
            Kind::String => Ok(Value::Str(text.into())),
            Kind::Timestamp => timestamp(text, *self.path).map_err(E::custom),
            _ => Err(self.wrong(format_args!("the text {text:?}"))),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        match &self.ty.kind {
            Kind::Record(layout) => RecordSeed {
                layout,
                path: Some(self.path),
                scratch: None,
            }
            .visit_map(map)
            .map(Value::Record),
            _ => Err(self.wrong(format_args!("an object"))),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        Err(self.wrong(format_args!("a list")))
    }
}
