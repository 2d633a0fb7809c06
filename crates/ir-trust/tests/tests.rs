mod bounds;
mod independent;
mod judge;
mod notation;
mod policy;
mod util;
