/**
 * Applies the ubrn runtime fixes (one copy, in the React Native package:
 * bindings/react-native/src/ubrn-fixes.ts, which explains them) to this package's
 * `@ubjs/core`, the copy the N-API-generated code loads. Import once, first.
 */
import * as runtime from "@ubjs/core";
import { applyUbrnFixes } from "../../react-native/src/ubrn-fixes.ts";

applyUbrnFixes(runtime);
