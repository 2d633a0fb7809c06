mod cosign_written;
mod independent;
mod judge;
mod notation;
mod policy;
mod util;
