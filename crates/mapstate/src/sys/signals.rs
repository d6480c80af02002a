//! Signal handlers: termination deferral.
