"""Start the project's own processes (router, simulator instances) as children that never outlive the caller."""
