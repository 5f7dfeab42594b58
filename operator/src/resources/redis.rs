//! (being written)

use kube::api::DynamicObject;

use super::{Generated, SpecError};
use crate::api::ChatCluster;

pub fn objects(_cc: &ChatCluster, _generated: &Generated) -> Result<Vec<DynamicObject>, SpecError> {
    Ok(Vec::new())
}
