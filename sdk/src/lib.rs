//! berth plugin SDK (see README).
