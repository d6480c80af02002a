//! userfaultfd write tracking (WP_ASYNC + PAGEMAP_SCAN).
