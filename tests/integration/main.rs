//! The one integration-test binary of the workspace: every integration test is a module of it, so
//! the workspace links one test binary instead of one per file.

mod bot;
mod cli;
mod deals;
mod demo;
mod node;
mod rep;
mod scale;
mod support;
mod vectors;
