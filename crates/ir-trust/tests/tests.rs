mod bounds;
mod cosign_written;
mod independent;
mod judge;
mod keyless;
mod notation;
mod policy;
mod util;
