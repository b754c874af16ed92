//! The commands besides `run`: the knock [`client`], [`replay`] of a capture, the importer of
//! knockd.conf ([`knockd_import`]), and the SD-card image's boot steps ([`bootfiles`],
//! [`firstboot`]).

pub mod args;
pub mod bootfiles;
pub mod client;
pub mod firstboot;
pub mod knock_page;
pub mod knockd_import;
pub mod phone;
pub mod replay;
pub mod spa;
