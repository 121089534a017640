/*
 * provider_connections--1.3--1.4.sql
 *
 * 1.3 to 1.4. A fresh CREATE EXTENSION of 1.4 runs provider_connections--1.3.sql
 * and then this script, so this file is also the only definition of what
 * 1.4 adds; sql/upgrade.sql checks that an install updated from 1.0 ends up
 * defined exactly as a fresh one.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
\echo Use "ALTER EXTENSION provider_connections UPDATE TO '1.4'" to load this file. \quit
