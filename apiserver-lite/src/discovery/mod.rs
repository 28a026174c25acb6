//! Discovery: `/api`, `/apis` and their group versions, legacy and aggregated (v2).
