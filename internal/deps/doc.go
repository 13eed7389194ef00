// Package deps holds the test that keeps the engine's dependency graph
// light: what a package may link is a decision (docs/design.md, "Package
// layout"), and the test fails when an import breaks it.
package deps
