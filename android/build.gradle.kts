// The Tether Android library: the UniFFI-generated Kotlin API (package dev.tether) over the
// Rust core, shipped as libtether.so per ABI and called through JNA.
//
// Sources: the generated bindings (below) and src/main/kotlin/dev/tether/Flows.kt, the
// Kotlin idioms (Flow, StateFlow) over them.
//
// Before building, run ./build-rust.sh (needs cargo-ndk and an Android NDK). It fills two
// gitignored directories this module reads:
//   src/main/jniLibs/<abi>/libtether.so   the Rust core for arm64-v8a, armeabi-v7a, x86_64
//   src/main/uniffi/dev/tether/tether.kt  the generated Kotlin bindings
//
// NOT RUN HERE: no Android SDK/NDK or Gradle was available where this was written. What was
// run is android/run-jvm-tests.sh (the same generated Kotlin on a desktop JVM).
plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

val generatedKotlin = file("src/main/uniffi")
val jniLibsDir = file("src/main/jniLibs")
val abis = listOf("arm64-v8a", "armeabi-v7a", "x86_64")

android {
    namespace = "dev.tether"
    compileSdk = 35

    defaultConfig {
        minSdk = 24
        consumerProguardFiles("consumer-rules.pro")
        ndk { abiFilters += abis }
    }

    sourceSets {
        getByName("main") {
            java.srcDir(generatedKotlin)
            // The Kotlin idioms over the generated API (Flows.kt). Listed explicitly:
            // harmless if the Kotlin plugin already adds it.
            java.srcDir("src/main/kotlin")
            jniLibs.srcDir(jniLibsDir)
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    buildTypes {
        release {
            // The app shrinks; this library only ships its keep rules (consumer-rules.pro).
            isMinifyEnabled = false
        }
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(org.jetbrains.kotlin.gradle.dsl.JvmTarget.JVM_17)
    }
}

dependencies {
    // @aar: JNA's Android flavour, which bundles libjnidispatch.so for each ABI. `api`
    // because the generated public classes extend JNA types (RustBuffer : Structure).
    api("net.java.dev.jna:jna:5.17.0@aar")
    // The generated suspend functions resume through kotlinx.coroutines.
    api("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.10.2")
}

// Fail early, with the fix, instead of with "unresolved reference: dev.tether".
val checkRustArtifacts by tasks.registering {
    val kt = File(generatedKotlin, "dev/tether/tether.kt")
    val libs = abis.map { File(jniLibsDir, "$it/libtether.so") }
    doLast {
        val missing = (listOf(kt) + libs).filter { !it.isFile }
        if (missing.isNotEmpty()) {
            throw GradleException(
                "Missing ${missing.joinToString()}.\nRun android/build-rust.sh first " +
                    "(needs cargo-ndk and ANDROID_NDK_HOME).",
            )
        }
    }
}
tasks.named("preBuild") { dependsOn(checkRustArtifacts) }
