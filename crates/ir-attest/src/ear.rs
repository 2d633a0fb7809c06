//! ear (todo)
