// Lets android/ build on its own (`gradle :assembleRelease` from this directory, or
// `includeBuild("path/to/tether/android")` from an app). An app can instead include it as a
// module of its own build:
//
//     // the app's settings.gradle.kts
//     include(":tether")
//     project(":tether").projectDir = file("../tether/android")
//
// in which case the app's build supplies the Android and Kotlin plugins (with versions)
// and this file is not read.
//
// NOT RUN HERE: there is no Android SDK/NDK or Gradle on the machine this was written on.
// The plugin versions below are a reasonable pairing, not a verified one.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
    plugins {
        id("com.android.library") version "8.7.3"
        id("org.jetbrains.kotlin.android") version "2.4.20" // the kotlinc version the JVM test compiles the bindings with
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "tether-android"
