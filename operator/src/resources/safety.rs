//! (being written)

use kube::api::DynamicObject;

use super::SpecError;
use crate::api::ChatCluster;

pub fn objects(_cc: &ChatCluster) -> Result<Vec<DynamicObject>, SpecError> {
    Ok(Vec::new())
}
