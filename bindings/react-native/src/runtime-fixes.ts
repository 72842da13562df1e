/**
 * Applies the ubrn runtime fixes (src/ubrn-fixes.ts explains them) to the `@ubjs/core`
 * the generated bindings load. index.tsx imports it first.
 */
import * as runtime from "@ubjs/core";
import { applyUbrnFixes } from "./ubrn-fixes";

applyUbrnFixes(runtime);
