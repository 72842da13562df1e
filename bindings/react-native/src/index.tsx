/**
 * react-native-tether's entry point: the fixes to the ubrn runtime first, then the
 * turbo-module installer and the generated Tether API (src/native.tsx, written by ubrn),
 * then the React hooks.
 */
/// <reference path="./hermes-globals.d.ts" />
import "./runtime-fixes";

export * from "./native";
export { default, uniffiInitAsync } from "./native";
export * from "./hooks";
