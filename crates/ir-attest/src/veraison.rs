//! veraison (todo)
