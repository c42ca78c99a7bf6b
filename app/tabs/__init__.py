"""One module per tab of the app: its layout, its events and the handlers they call."""
