"""The notification controller: Flux events in, Alerts to Providers out, webhook Receivers."""
