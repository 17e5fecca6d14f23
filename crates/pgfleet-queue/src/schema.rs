//! OpenAPI schemas of the queue's types (the `openapi` feature): what a payload may hold.

use utoipa::openapi::{Ref, RefOr};

/// Any JSON value the API stores exactly (payloads, notification data): `null`, booleans,
/// strings, integers that fit 64 bits, non-integral numbers a double holds, and arrays and
/// objects of these. An integral number beyond 64 bits (`1e20`, `12345678901234567890123`)
/// is refused (the gateway answers 422, see its `json_guard`).
pub struct JsonValue;

impl utoipa::PartialSchema for JsonValue {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, Type};
        let me = || RefOr::Ref(Ref::from_schema_name("JsonValue"));
        let of = |t: Type| ObjectBuilder::new().schema_type(t);
        let mut not_integer = utoipa::openapi::extensions::Extensions::default();
        not_integer.insert("not".into(), serde_json::json!({"type": "integer"}));
        AnyOfBuilder::new()
            .item(of(Type::Null))
            .item(of(Type::Boolean))
            .item(of(Type::String))
            .item(
                of(Type::Integer)
                    .minimum(Some(utoipa::Number::Int(i64::MIN as isize)))
                    .maximum(Some(utoipa::Number::UInt(u64::MAX as usize))),
            )
            .item(of(Type::Number).extensions(Some(not_integer)))
            .item(ArrayBuilder::new().items(me()))
            .item(of(Type::Object).additional_properties(Some(me())))
            .description(Some("any JSON value; numbers are 64-bit integers (-2^63 to 2^64-1) or non-integral doubles, so that they round-trip exactly"))
            .into()
    }
}

impl utoipa::ToSchema for JsonValue {}
