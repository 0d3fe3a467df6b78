"""VCR cassette tests: recorded sandbox exchanges replayed with the network blocked."""
