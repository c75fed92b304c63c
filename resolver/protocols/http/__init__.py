"""The Handle.net v9 JSON REST API: response bodies and the outcome→HTTP status table."""
