//! Types of expression values and the record types declared by schemas.

use std::fmt;
use std::sync::Arc;

/// The type of a value: a kind, and whether the value may be null.
#[derive(Clone, Debug, PartialEq)]
pub struct Type {
    /// What the value is when it is not null.
    pub kind: Kind,
    /// Whether it may be null.
    pub nullable: bool,
}

/// Kinds of value.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Only `null` itself.
    Null,
    /// `true` or `false`.
    Bool,
    /// A 64-bit signed integer.
    Int,
    /// A 64-bit float.
    Float,
    /// UTF-8 text.
    String,
    /// A point in time, with millisecond precision.
    Timestamp,
    /// A span of time, with millisecond precision.
    Duration,
    /// A record laid out by a schema.
    Record(Arc<RecordType>),
    /// The type of an expression that already has an error; it is accepted
    /// everywhere so one mistake is reported once.
    Unknown,
}

impl Type {
    /// The type of the `null` literal.
    pub const NULL: Self = Self {
        kind: Kind::Null,
        nullable: true,
    };
    /// A boolean that is never null.
    pub const BOOL: Self = Self::of(Kind::Bool);
    /// An integer that is never null.
    pub const INT: Self = Self::of(Kind::Int);
    /// A float that is never null.
    pub const FLOAT: Self = Self::of(Kind::Float);
    /// A string that is never null.
    pub const STRING: Self = Self::of(Kind::String);
    /// A timestamp that is never null.
    pub const TIMESTAMP: Self = Self::of(Kind::Timestamp);
    /// A duration that is never null.
    pub const DURATION: Self = Self::of(Kind::Duration);
    /// The type of an expression that already has an error.
    pub const UNKNOWN: Self = Self::of(Kind::Unknown);

    /// A value of `kind` that is never null.
    pub const fn of(kind: Kind) -> Self {
        Self {
            kind,
            nullable: false,
        }
    }

    /// A record of `record`'s layout that is never null.
    pub fn record(record: Arc<RecordType>) -> Self {
        Self::of(Kind::Record(record))
    }

    /// The same kind, possibly null.
    #[must_use]
    pub fn or_null(self) -> Self {
        Self {
            nullable: true,
            ..self
        }
    }

    /// The same kind, never null.
    #[must_use]
    pub fn non_null(self) -> Self {
        Self {
            nullable: false,
            ..self
        }
    }

    /// Whether this is the type of an expression that already failed.
    pub fn is_unknown(&self) -> bool {
        self.kind == Kind::Unknown
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Null => return f.write_str("null"),
            Kind::Bool => f.write_str("bool")?,
            Kind::Int => f.write_str("int")?,
            Kind::Float => f.write_str("float")?,
            Kind::String => f.write_str("string")?,
            Kind::Timestamp => f.write_str("timestamp")?,
            Kind::Duration => f.write_str("duration")?,
            Kind::Record(record) => write!(f, "record({})", record.name)?,
            Kind::Unknown => f.write_str("unknown")?,
        }
        if self.nullable {
            f.write_str("?")?;
        }
        Ok(())
    }
}

/// The layout of a record: its fields in declaration order.
#[derive(Debug, PartialEq)]
pub struct RecordType {
    /// How messages call it: the source name, or a path such as `app.amount`.
    pub name: String,
    /// The fields, in the order declared; a field's position is its index.
    pub fields: Vec<Field>,
}

/// One field of a record.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The name used in expressions and in input data.
    pub name: String,
    /// Its type.
    pub ty: Type,
}

impl RecordType {
    /// The position of the field called `name`.
    pub fn field(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|field| field.name == name)
    }

    /// The field names, for suggestions.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|field| field.name.as_str())
    }
}

impl fmt::Display for RecordType {
    /// The schema as written in a pipeline, on one line:
    /// `(order_id: string, amount: (value: int, currency: string))`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}: ", super::ast::DisplayName(&field.name))?;
            match &field.ty.kind {
                Kind::Record(inner) => write!(f, "{inner}")?,
                _ => write!(f, "{}", field.ty)?,
            }
        }
        f.write_str(")")
    }
}

/// The scalar type names a schema may use, with their types.
pub const SCALAR_TYPES: [(&str, Type); 5] = [
    ("string", Type::STRING),
    ("int", Type::INT),
    ("float", Type::FLOAT),
    ("bool", Type::BOOL),
    ("timestamp", Type::TIMESTAMP),
];
