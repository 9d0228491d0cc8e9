//! Where the announcer's plans come from: a YAML file ([`file`], standalone mode) or the
//! cluster's objects ([`kubernetes`]). Each turns what it reads into a
//! [`ferrolb_model::config::Plan`] and reports the announcer's outcomes where its users
//! look.

pub mod file;
pub mod kubernetes;
