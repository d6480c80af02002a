//! Graceful termination: defer SIGTERM, SIGINT and SIGHUP during critical sections.
