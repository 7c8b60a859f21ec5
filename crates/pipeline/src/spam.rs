//! The built-in spam classifier as a service: models in memory (loaded from the store on first
//! use), judgement of a message for a recipient, and learning that is durable before it shows.
//!
//! Each model has a lock for learning (lessons of one model are written in order) and a
//! read-write lock over its counts (judging takes the read side for the few microseconds of
//! lookups). A lesson is computed as new absolute counts under the learning lock, written to
//! the store, and only then applied in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use tern_scan::classifier::{Class, Counts, Features, Judgement, Model, judge};
use tern_store::{AccountId, BlobHash, SpamClass, SpamModelOwner, SpamModelUpdate, Store, StoreError};

/// How the classifier is set up.
#[derive(Debug, Clone)]
pub struct SpamSettings {
    /// Messages of each class the models must have learnt (together) before they judge.
    pub min_learned: u64,
    /// Features the global model keeps at most; beyond it the rarest are forgotten.
    pub max_features: usize,
    /// The same for each user's model.
    pub max_user_features: usize,
}

impl Default for SpamSettings {
    fn default() -> Self {
        SpamSettings { min_learned: 50, max_features: 2_000_000, max_user_features: 200_000 }
    }
}

/// A model over its limit is pruned to this fraction of it, so that pruning is rare.
const PRUNE_TO: f64 = 0.8;

struct OwnedModel {
    counts: RwLock<Model>,
    learning: tokio::sync::Mutex<()>,
}

/// What a lesson did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LessonOutcome {
    Learnt,
    /// The message had been taught as this class already: nothing changed.
    AlreadyKnown,
    /// The message had been taught as the other class: that was undone first.
    Relearnt,
}

pub struct SpamFilter {
    store: Arc<dyn Store>,
    settings: SpamSettings,
    models: Mutex<HashMap<SpamModelOwner, Arc<tokio::sync::OnceCell<Arc<OwnedModel>>>>>,
}

/// Model statistics for `tern spam status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStatus {
    pub owner: SpamModelOwner,
    pub spam_learned: u64,
    pub ham_learned: u64,
    pub features: usize,
}

impl SpamFilter {
    pub fn new(store: Arc<dyn Store>, settings: SpamSettings) -> SpamFilter {
        SpamFilter { store, settings, models: Mutex::new(HashMap::new()) }
    }

    pub fn settings(&self) -> &SpamSettings {
        &self.settings
    }

    async fn model(&self, owner: SpamModelOwner) -> Result<Arc<OwnedModel>, StoreError> {
        let cell = {
            let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
            models.entry(owner).or_default().clone()
        };
        let model = cell
            .get_or_try_init(|| async {
                let data = self.store.spam_model(owner).await?;
                // A model may hold millions of features: built off the async workers.
                tokio::task::spawn_blocking(move || {
                    let mut model = Model {
                        spam_learned: data.spam_learned,
                        ham_learned: data.ham_learned,
                        features: tern_scan::classifier::FeatureMap::with_capacity_and_hasher(
                            data.features.len(),
                            Default::default(),
                        ),
                    };
                    for (hash, spam, ham) in data.features {
                        model.features.insert(hash, Counts { spam, ham });
                    }
                    Arc::new(OwnedModel { counts: RwLock::new(model), learning: tokio::sync::Mutex::new(()) })
                })
                .await
                .map_err(|e| StoreError::Task(e.to_string()))
            })
            .await?;
        Ok(model.clone())
    }

    /// Judges a message for a recipient account (its model and the global one together), or
    /// with the global model alone. `Err(reason)` when the models have not learnt enough.
    pub async fn judge(
        &self,
        features: &Features,
        account: Option<AccountId>,
    ) -> Result<Result<Judgement, String>, StoreError> {
        let global = self.model(SpamModelOwner::Global).await?;
        let user = match account {
            Some(a) => Some(self.model(SpamModelOwner::Account(a)).await?),
            None => None,
        };
        let g = global.counts.read().unwrap_or_else(|p| p.into_inner());
        let u = user.as_ref().map(|u| u.counts.read().unwrap_or_else(|p| p.into_inner()));
        let mut models: Vec<&Model> = vec![&g];
        if let Some(u) = &u {
            models.push(u);
        }
        let spam: u64 = models.iter().map(|m| m.spam_learned).sum();
        let ham: u64 = models.iter().map(|m| m.ham_learned).sum();
        if spam < self.settings.min_learned || ham < self.settings.min_learned {
            return Ok(Err(format!("learnt {spam} spam and {ham} ham, needs {} of each", self.settings.min_learned)));
        }
        Ok(Ok(judge(features, &models)))
    }

    /// Teaches one message (by content hash) to a model, durably.
    pub async fn learn(
        &self,
        owner: SpamModelOwner,
        message: BlobHash,
        class: Class,
        features: &Features,
    ) -> Result<LessonOutcome, StoreError> {
        let model = self.model(owner).await?;
        let _lesson = model.learning.lock().await;
        let store_class = match class {
            Class::Spam => SpamClass::Spam,
            Class::Ham => SpamClass::Ham,
        };
        let before = self.store.spam_lesson(owner, message).await?;
        let undo = match before {
            Some(c) if c == store_class => return Ok(LessonOutcome::AlreadyKnown),
            Some(SpamClass::Spam) => Some(Class::Spam),
            Some(SpamClass::Ham) => Some(Class::Ham),
            None => None,
        };
        // The new state of the touched features, computed on a copy of just those.
        let mut next = Model::default();
        {
            let counts = model.counts.read().unwrap_or_else(|p| p.into_inner());
            next.spam_learned = counts.spam_learned;
            next.ham_learned = counts.ham_learned;
            for h in features.hashes() {
                next.features.insert(h, counts.features.get(&h).copied().unwrap_or_default());
            }
        }
        if let Some(old) = undo {
            next.learn(old, features.hashes(), true);
        }
        next.learn(class, features.hashes(), false);
        let update = SpamModelUpdate {
            owner,
            spam_learned: next.spam_learned,
            ham_learned: next.ham_learned,
            features: features
                .hashes()
                .map(|h| {
                    let c = next.features.get(&h).copied().unwrap_or_default();
                    (h, c.spam, c.ham)
                })
                .collect(),
            lesson: Some((message, store_class)),
        };
        self.store.spam_model_update(update).await?;
        let size = {
            let mut counts = model.counts.write().unwrap_or_else(|p| p.into_inner());
            if owner == SpamModelOwner::Global {
                metrics::gauge!("tern_spam_model_learned", "model" => "global", "class" => "spam")
                    .set(next.spam_learned as f64);
                metrics::gauge!("tern_spam_model_learned", "model" => "global", "class" => "ham")
                    .set(next.ham_learned as f64);
            }
            counts.spam_learned = next.spam_learned;
            counts.ham_learned = next.ham_learned;
            for h in features.hashes() {
                match next.features.get(&h) {
                    Some(c) if *c != Counts::default() => {
                        counts.features.insert(h, *c);
                    }
                    _ => {
                        counts.features.remove(&h);
                    }
                }
            }
            if owner == SpamModelOwner::Global {
                metrics::gauge!("tern_spam_model_features", "model" => "global").set(counts.features.len() as f64);
            }
            counts.features.len()
        };
        metrics::counter!("tern_spam_learned_total", "class" => class.as_str()).increment(1);
        let limit = match owner {
            SpamModelOwner::Global => self.settings.max_features,
            SpamModelOwner::Account(_) => self.settings.max_user_features,
        };
        if size > limit {
            self.prune(owner, &model, limit).await?;
        }
        Ok(if undo.is_some() { LessonOutcome::Relearnt } else { LessonOutcome::Learnt })
    }

    /// Forgets the rarest features of a model over its limit (those seen in the fewest
    /// messages, oldest learnt first among equals is not known, so the order is by count
    /// only), down to [`PRUNE_TO`] of the limit. Called under the model's learning lock.
    async fn prune(&self, owner: SpamModelOwner, model: &Arc<OwnedModel>, limit: usize) -> Result<(), StoreError> {
        let target = (limit as f64 * PRUNE_TO) as usize;
        // Ranking millions of features takes tens of milliseconds: off the async workers.
        let ranked = Arc::clone(model);
        let victims: Vec<u64> = tokio::task::spawn_blocking(move || {
            let counts = ranked.counts.read().unwrap_or_else(|p| p.into_inner());
            let excess = counts.features.len().saturating_sub(target);
            let mut by_count: Vec<(u64, u64)> =
                counts.features.iter().map(|(h, c)| (u64::from(c.spam) + u64::from(c.ham), *h)).collect();
            if excess < by_count.len() {
                by_count.select_nth_unstable(excess);
            }
            by_count.truncate(excess);
            by_count.into_iter().map(|(_, h)| h).collect()
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?;
        if victims.is_empty() {
            return Ok(());
        }
        let (spam_learned, ham_learned) = {
            let counts = model.counts.read().unwrap_or_else(|p| p.into_inner());
            (counts.spam_learned, counts.ham_learned)
        };
        let update = SpamModelUpdate {
            owner,
            spam_learned,
            ham_learned,
            features: victims.iter().map(|h| (*h, 0, 0)).collect(),
            lesson: None,
        };
        self.store.spam_model_update(update).await?;
        let mut counts = model.counts.write().unwrap_or_else(|p| p.into_inner());
        for h in &victims {
            counts.features.remove(h);
        }
        tracing::info!(
            ?owner,
            forgotten = victims.len(),
            kept = counts.features.len(),
            "spam model pruned to its size limit"
        );
        metrics::counter!("tern_spam_features_pruned_total").increment(victims.len() as u64);
        Ok(())
    }

    pub async fn status(&self, owner: SpamModelOwner) -> Result<ModelStatus, StoreError> {
        let model = self.model(owner).await?;
        let counts = model.counts.read().unwrap_or_else(|p| p.into_inner());
        Ok(ModelStatus {
            owner,
            spam_learned: counts.spam_learned,
            ham_learned: counts.ham_learned,
            features: counts.features.len(),
        })
    }
}

/// A message to learn from, as the IMAP side knows it.
#[derive(Debug, Clone)]
pub struct FiledMessage {
    pub blob: BlobHash,
    pub delivery_id: u64,
}

/// Lessons queued for the trainer at most; beyond it users' filing is not learnt (logged).
const TRAINING_QUEUE: usize = 10_000;

/// Learns from users' filing (messages moved into or out of Junk) on one background task, in
/// order, bounded: the IMAP session that filed them never waits for it.
pub struct Trainer {
    tx: tokio::sync::mpsc::Sender<(AccountId, FiledMessage, Class)>,
}

impl Trainer {
    /// Starts the training task.
    pub fn start(filter: Arc<SpamFilter>, store: Arc<dyn Store>) -> Trainer {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(AccountId, FiledMessage, Class)>(TRAINING_QUEUE);
        tokio::spawn(async move {
            while let Some((account, message, class)) = rx.recv().await {
                if let Err(e) = learn_filed(&filter, &store, account, &message, class).await {
                    tracing::warn!(error = %e, account, "could not learn from a filed message");
                }
            }
        });
        Trainer { tx }
    }

    pub fn filed(&self, account: AccountId, messages: Vec<FiledMessage>, class: Class) {
        for message in messages {
            if self.tx.try_send((account, message, class)).is_err() {
                tracing::warn!(account, "spam training queue full; a filed message is not learnt");
                metrics::counter!("tern_spam_training_dropped_total").increment(1);
            }
        }
    }
}

/// Learns one filed message for its account's model and the global one. The features are the
/// message's as stored, with the arrival facts recorded with its delivery.
async fn learn_filed(
    filter: &SpamFilter,
    store: &Arc<dyn Store>,
    account: AccountId,
    message: &FiledMessage,
    class: Class,
) -> Result<(), StoreError> {
    let Some(raw) = store.blob_get(message.blob).await? else { return Ok(()) };
    let envelope = store.envelope_get(message.delivery_id).await?;
    let mut facts = envelope
        .as_ref()
        .and_then(|e| e.auth_results.as_deref())
        .map(tern_scan::Facts::from_authentication_results)
        .unwrap_or_default();
    if let Some(e) = &envelope {
        facts.tls = e.tls.is_some();
        facts.authenticated = e.authenticated_as.is_some();
    }
    let features = crate::stages::features_of(Arc::new(raw), facts).await;
    filter.learn(SpamModelOwner::Account(account), message.blob, class, &features).await?;
    filter.learn(SpamModelOwner::Global, message.blob, class, &features).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_scan::Facts;

    fn features(text: &str) -> Features {
        Features::extract(format!("Subject: t\r\n\r\n{text}\r\n").as_bytes(), &Facts::default())
    }

    #[tokio::test]
    async fn lessons_are_durable_idempotent_and_models_stay_under_their_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(tern_store::embedded::EmbeddedStore::open(dir.path(), 8).unwrap());
        let settings = SpamSettings { min_learned: 2, max_features: 60, max_user_features: 60 };
        let filter = SpamFilter::new(Arc::clone(&store), settings.clone());
        for i in 0..30 {
            let f = features(&format!("word{i} other{i} third{i} shared"));
            let class = if i % 2 == 0 { Class::Spam } else { Class::Ham };
            let key = BlobHash::of(format!("m{i}").as_bytes());
            assert_eq!(LessonOutcome::Learnt, filter.learn(SpamModelOwner::Global, key, class, &f).await.unwrap());
            assert!(filter.status(SpamModelOwner::Global).await.unwrap().features <= 60);
        }
        // The same message again changes nothing; taught the other way it is relearnt.
        let f = features("word0 other0 third0 shared");
        let key = BlobHash::of(b"m0");
        assert_eq!(
            LessonOutcome::AlreadyKnown,
            filter.learn(SpamModelOwner::Global, key, Class::Spam, &f).await.unwrap()
        );
        assert_eq!(LessonOutcome::Relearnt, filter.learn(SpamModelOwner::Global, key, Class::Ham, &f).await.unwrap());
        let status = filter.status(SpamModelOwner::Global).await.unwrap();
        assert_eq!((14, 16), (status.spam_learned, status.ham_learned));

        // What is in memory is what the store has (a new filter loads it).
        let reloaded = SpamFilter::new(Arc::clone(&store), settings);
        assert_eq!(status, reloaded.status(SpamModelOwner::Global).await.unwrap());
        store.shutdown().await.unwrap();
    }
}
