//! Path ids: a UUID in its hyphenated text form, or a 400 that says which
//! path segment was wrong.

use super::problem::Problem;
use uuid::Uuid;

/// Parses the `{what}` path segment as a UUID.
pub fn parse_id(what: &'static str, text: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(text).map_err(|err| {
        Problem::bad_request(
            "invalid_id",
            format!("{what} {text:?} is not a UUID: {err}"),
        )
    })
}
