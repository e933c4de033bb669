//! PDF: text per page, the page number as each passage's location.

use super::Document;
use crate::error::{Error, Result};

pub(super) fn pdf(_bytes: &[u8]) -> Result<Document> {
    Err(Error::unsupported("PDF"))
}
