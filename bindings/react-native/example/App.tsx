/**
 * An example screen using every hook of react-native-tether: the auth state with
 * sign-in / sign-out, the quota with its paywall, a chat with the streaming reply, send
 * and stop, and a photo upload (detect) with progress, the result, the error and cancel.
 * Type-checked by check.sh against react-native 0.88.1 and React 19; not run here (no
 * device or simulator). Copy it into an app's App.tsx to try the package.
 */
import { useEffect, useMemo, useState } from "react";
import { ActivityIndicator, Button, FlatList, StyleSheet, Text, TextInput, View } from "react-native";

import {
  ClientConfig,
  ImageSource,
  MessageStatus,
  Role,
  TetherClient,
  TetherError,
  inMemoryTokenStore,
  useAuthState,
  useChat,
  useQuota,
  useUpload,
  type Message,
  type TetherClientLike,
} from "react-native-tether";

// An app keeps one client for its lifetime. (A real app backs the token store with the
// keychain / an encrypted store; the in-memory one forgets the session on restart.)
function useTetherClient(): TetherClient {
  const client = useMemo(
    () =>
      new TetherClient(
        ClientConfig.create({ baseUrl: "https://api.example.com", clientId: "example-app", dataDir: "/data/tether" }),
        inMemoryTokenStore(),
      ),
    [],
  );
  useEffect(() => {
    void client.restoreSession(undefined);
    return () => client.uniffiDestroy();
  }, [client]);
  return client;
}

export default function App() {
  const client = useTetherClient();
  const auth = useAuthState(client);
  const [conversationId, setConversationId] = useState<string | undefined>(undefined);

  useEffect(() => {
    if (auth.tag !== "SignedIn" || conversationId !== undefined) return;
    void client.createConversation("Example", undefined).then((c) => setConversationId(c.id));
  }, [auth, client, conversationId]);

  if (auth.tag === "Unknown") return <ActivityIndicator style={styles.center} />;
  if (auth.tag === "SignedOut") {
    return (
      <View style={styles.center}>
        <Button title="Continue as guest" onPress={() => void client.signInAnonymously(undefined)} />
      </View>
    );
  }
  return (
    <View style={styles.screen}>
      <Text>Signed in as {auth.inner.userId}</Text>
      <Button title="Sign out" onPress={() => void client.signOut()} />
      <QuotaBanner client={client} />
      {conversationId !== undefined && <Chat client={client} conversationId={conversationId} />}
      <PhotoDetect client={client} path="/data/photos/cat.jpg" />
    </View>
  );
}

/** useQuota: what is left, and the paywall when the backend raises it. */
function QuotaBanner({ client }: { client: TetherClientLike }) {
  const { quota, paywall, refresh } = useQuota(client);
  if (paywall !== undefined) {
    return (
      <View style={styles.paywall}>
        <Text>You have used this month's free requests. Upgrade to {paywall || "a paid plan"}.</Text>
        {/* After the store purchase completes, refresh() lowers the paywall. */}
        <Button title="I upgraded" onPress={() => void refresh()} />
      </View>
    );
  }
  return (
    <Text>
      {quota.plan ?? "…"} plan: {quota.remaining ?? "?"} of {quota.limit ?? "?"} left
    </Text>
  );
}

/** useChat: the history, the reply growing as it streams, send and stop. */
function Chat({ client, conversationId }: { client: TetherClientLike; conversationId: string }) {
  const chat = useChat(client, conversationId);
  const [draft, setDraft] = useState("");
  const planRequired = TetherError.instanceOf(chat.error) && TetherError.PlanRequired.instanceOf(chat.error);
  return (
    <View style={styles.chat}>
      {chat.loading && <ActivityIndicator />}
      <FlatList<Message>
        data={chat.messages}
        keyExtractor={(m) => m.id}
        renderItem={({ item }) => <Bubble mine={item.role === Role.User} text={item.content} note={statusNote(item)} />}
      />
      {chat.pending !== undefined && <Bubble mine text={chat.pending} />}
      {chat.streaming !== undefined && <Bubble mine={false} text={chat.streaming.text + " ▍"} />}
      {chat.error !== undefined && (
        <Text style={styles.error}>{planRequired ? "Upgrade to keep chatting." : String(chat.error.message)}</Text>
      )}
      <TextInput value={draft} onChangeText={setDraft} placeholder="Message" editable={!chat.sending} />
      {chat.sending ? (
        <Button title="Stop" onPress={chat.cancel} />
      ) : (
        <Button
          title="Send"
          disabled={draft.trim() === ""}
          onPress={() => {
            const text = draft;
            setDraft("");
            void chat.send(text);
          }}
        />
      )}
    </View>
  );
}

function statusNote(m: Message): string | undefined {
  switch (m.status) {
    case MessageStatus.Cancelled:
      return "stopped";
    case MessageStatus.Incomplete:
      return "cut off";
    case MessageStatus.Failed:
      return m.error ?? "failed";
    default:
      return undefined;
  }
}

function Bubble({ mine, text, note }: { mine: boolean; text: string; note?: string }) {
  return (
    <View style={mine ? styles.mine : styles.theirs}>
      <Text>{text}</Text>
      {note !== undefined && <Text style={styles.note}>{note}</Text>}
    </View>
  );
}

/** useUpload: detect objects in a photo, with progress, the result, the error and cancel. */
function PhotoDetect({ client, path }: { client: TetherClientLike; path: string }) {
  const upload = useUpload(client);
  const result = upload.result !== undefined && "objects" in upload.result ? upload.result : undefined;
  return (
    <View>
      {upload.uploading ? (
        <Button title="Cancel upload" onPress={upload.cancel} />
      ) : (
        <Button title="What is in this photo?" onPress={() => void upload.detect(new ImageSource.File({ path }))} />
      )}
      {upload.progress !== undefined && <Text>Uploading… {Math.round(upload.progress.fraction * 100)}%</Text>}
      {result !== undefined && <Text>Found: {result.objects.map((o) => o.label).join(", ") || "nothing"}</Text>}
      {upload.cancelled && <Text>Upload cancelled.</Text>}
      {upload.error !== undefined && <Text style={styles.error}>{upload.error.message}</Text>}
      {!upload.uploading && (upload.result !== undefined || upload.error !== undefined) && (
        <Button title="Clear" onPress={upload.reset} />
      )}
    </View>
  );
}

const styles = StyleSheet.create({
  screen: { flex: 1, padding: 16, gap: 8 },
  center: { flex: 1, alignItems: "center", justifyContent: "center" },
  chat: { flex: 1 },
  mine: { alignSelf: "flex-end", backgroundColor: "#dcf0ff", padding: 8, borderRadius: 8, marginVertical: 2 },
  theirs: { alignSelf: "flex-start", backgroundColor: "#eee", padding: 8, borderRadius: 8, marginVertical: 2 },
  note: { fontSize: 11, color: "#888" },
  paywall: { padding: 12, backgroundColor: "#fff4d6", borderRadius: 8 },
  error: { color: "#b00020" },
});
