"""The web channel: the public complaint page, supervision feedback and progress inquiry."""
