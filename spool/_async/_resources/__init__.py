"""One module per resource of the API, each a class of the client's methods for it."""
