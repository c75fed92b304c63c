"""The Handle protocol (RFC 3652): response codes now; the message codec arrives with the server."""
