"""The security suite of registration and authorization (issue 4 §6): REST and service level."""
