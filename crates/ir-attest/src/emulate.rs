//! emulate (todo)
