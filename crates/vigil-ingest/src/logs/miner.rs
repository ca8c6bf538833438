//! The online template miner: one pass over the lines, bounded memory, stable ids.
//!
//! Each message is tokenised and masked (see [`super::token`]); the sequence of masked
//! tokens is its *shape*. A shape seen before goes straight to its template through a hash
//! table, which is the path nearly every line takes. A new shape is compared with the
//! templates of the same token count: when it is close enough to one (most of its tokens
//! equal, the differing ones plausibly values of a variable) the template takes it and
//! generalises the differing positions to `<*>`, keeping its id; otherwise it starts a new
//! template.
//!
//! An event that carries an exception ([`Miner::add_event`]) is mined as its first line's
//! message followed by `=> ` and the exception (its class, and the top frame of the program's
//! own code when there is one). Those last words are kept as they are and set the templates
//! apart: events of different exceptions never share a template, whatever their messages.
//!
//! A new template's id is a hash of the masked text of the event that starts it (the next
//! free id when this miner gave that one already), kept as the template generalises: miners
//! that see the same events agree on their templates' ids, and miners that start different
//! templates (replicas mining one app at once) give them ids that do not collide.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use super::event::{self, Event, EXCEPTION_MARK};
use super::header::{HeaderFormat, Level};
use super::token::{self, ShapeHasher, Skeleton, TokenKind, WILDCARD};

/// Identifies a template for the life of a miner and across restarts
/// ([`Miner::from_templates`]).
///
/// A new template's id is derived from the text it starts with (see [`Miner`]'s ids), so that
/// miners that see the same event give its template the same id, and miners that start
/// different templates give them different ids: replicas mining one app store templates that
/// never overwrite one another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TemplateId(pub u64);

impl std::fmt::Display for TemplateId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// Settings of a [`Miner`]; the defaults suit ordinary application and system logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MinerConfig {
    /// Share of a template's tokens a new shape must match (equal, or a value where the
    /// template has a variable) to join it.
    pub similarity: f64,
    /// Templates kept at most; past it, a new shape joins its closest template, or the
    /// catch-all `<*>` template when none has its length.
    pub max_templates: usize,
    /// Shapes remembered for the fast path; the table is emptied when it fills up.
    pub max_shapes: usize,
    /// Tokens looked at per message (at most 128); the last one takes the rest of the
    /// message.
    pub max_tokens: usize,
    /// Distinct words seen at the same positions of otherwise equal templates before those
    /// positions become variables. Words are usually the constant text, so one or two
    /// variants (`GET` and `POST`, `opened` and `closed`) stay apart, while user names or
    /// states with many values merge.
    pub min_word_values: usize,
    /// Bytes looked at per message; the rest is ignored.
    pub max_message_bytes: usize,
}

impl Default for MinerConfig {
    fn default() -> MinerConfig {
        MinerConfig {
            similarity: 0.5,
            max_templates: 20_000,
            max_shapes: 200_000,
            max_tokens: 96,
            min_word_values: 5,
            max_message_bytes: 4096,
        }
    }
}

/// What adding a line did to its template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The line fits a template as it was.
    None,
    /// The line started a new template.
    New,
    /// The line joined a template whose text became more general.
    Generalised,
}

/// The outcome of [`Miner::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    pub id: TemplateId,
    pub change: Change,
}

/// A template as the miner reports and stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub id: TemplateId,
    /// The constant text, with `<*>` where the lines vary.
    pub text: String,
    /// Lines that fell in the template.
    pub count: u64,
    /// The most severe level seen on its lines, when the lines had one.
    #[serde(default)]
    pub level: Option<Level>,
}

impl Template {
    /// The template in the form release bundles carry.
    pub fn to_log_template(&self) -> vigil_core::LogTemplate {
        vigil_core::LogTemplate {
            id: self.id.to_string(),
            text: self.text.clone(),
            level: self
                .level
                .map(Level::as_str)
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// One position of a template.
#[derive(Debug, Clone)]
enum Piece {
    /// A variable: any token.
    Wild,
    /// A token in its masked form (`uid=<*>`, `<*>]`), with its kind and skeleton; a token
    /// of kind [`TokenKind::Masked`] is a variable with its punctuation.
    Const {
        text: Box<str>,
        kind: TokenKind,
        skeleton: Skeleton,
    },
}

impl PartialEq for Piece {
    /// Pieces are equal when their texts are: kind and skeleton follow from the text.
    fn eq(&self, other: &Piece) -> bool {
        match (self, other) {
            (Piece::Wild, Piece::Wild) => true,
            (Piece::Const { text: left, .. }, Piece::Const { text: right, .. }) => left == right,
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
struct Slot {
    id: TemplateId,
    pieces: Vec<Piece>,
    count: u64,
    level: Option<Level>,
    /// The hash of the exception the template's events carry, 0 for none: templates of
    /// different keys are never compared.
    key: u64,
    /// Set when the template was absorbed into another one.
    merged_into: Option<u32>,
    /// Templates that differ from this one in words at the same positions (the key, a bit per
    /// position): candidates for one template with variables there.
    families: Vec<(u128, Vec<u32>)>,
}

impl Slot {
    fn text(&self) -> String {
        let mut text = String::new();
        for (index, piece) in self.pieces.iter().enumerate() {
            if index > 0 {
                text.push(' ');
            }
            match piece {
                Piece::Wild => text.push_str(WILDCARD),
                Piece::Const { text: constant, .. } => text.push_str(constant),
            }
        }
        text
    }

    fn template(&self) -> Template {
        Template {
            id: self.id,
            text: self.text(),
            count: self.count,
            level: self.level,
        }
    }

    fn note_level(&mut self, level: Option<Level>) {
        if level > self.level {
            self.level = level;
        }
    }
}

/// The shape hashes are already mixed: the table uses them as they are.
#[derive(Debug, Default, Clone, Copy)]
struct PassThroughHasher {
    value: u64,
}

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.value
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.value = self.value.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.value = value;
    }
}

type ShapeTable = HashMap<u64, u32, BuildHasherDefault<PassThroughHasher>>;

/// The online template miner. See the module documentation.
#[derive(Debug)]
pub struct Miner {
    config: MinerConfig,
    slots: Vec<Slot>,
    by_id: HashMap<TemplateId, u32>,
    /// Indices of the live slots by token count.
    by_length: HashMap<usize, Vec<u32>>,
    shapes: ShapeTable,
    live: usize,
    catch_all: Option<u32>,
    token_ranges: Vec<(u32, u32)>,
    token_kinds: Vec<TokenKind>,
}

impl Default for Miner {
    fn default() -> Miner {
        Miner::new(MinerConfig::default())
    }
}

impl Miner {
    /// An empty miner.
    pub fn new(config: MinerConfig) -> Miner {
        Miner {
            config,
            slots: Vec::new(),
            by_id: HashMap::new(),
            by_length: HashMap::new(),
            shapes: ShapeTable::default(),
            live: 0,
            catch_all: None,
            token_ranges: Vec::new(),
            token_kinds: Vec::new(),
        }
    }

    /// A miner that goes on from stored templates: they keep their ids, texts, counts and
    /// levels, and new templates get ids none of them has. A stored id met twice keeps its
    /// first template.
    pub fn from_templates(
        config: MinerConfig,
        templates: impl IntoIterator<Item = Template>,
    ) -> Miner {
        let mut miner = Miner::new(config);
        for template in templates {
            if miner.by_id.contains_key(&template.id) {
                continue;
            }
            let pieces = template
                .text
                .split_ascii_whitespace()
                .map(piece_of_template_word)
                .collect::<Vec<_>>();
            let is_catch_all = template.text == WILDCARD;
            let key = event::template_suffix_of(&template.text).map_or(0, exception_key);
            let index = miner.push_slot(template.id, pieces, key);
            let slot = &mut miner.slots[index as usize];
            slot.count = template.count;
            slot.level = template.level;
            if is_catch_all && miner.catch_all.is_none() {
                miner.catch_all = Some(index);
            }
        }
        miner
    }

    /// The settings in use.
    pub fn config(&self) -> &MinerConfig {
        &self.config
    }

    /// Adds one message (a line without its header) with no level.
    pub fn add(&mut self, message: &str) -> Added {
        self.add_with_level(message, None)
    }

    /// Splits a whole line with `format` and adds its message with its level.
    pub fn add_line(&mut self, line: &str, format: &HeaderFormat) -> Added {
        let split = format.split(line);
        self.add_with_level(split.message, split.level)
    }

    /// Adds one event (see [`super::Grouper`]) by its first line: the line's message, with
    /// the exception the event carries when it has a stack trace, at the event's level (an
    /// exception counts at least as an error).
    pub fn add_event(&mut self, first_line: &str, format: &HeaderFormat, event: &Event) -> Added {
        let split = format.split(first_line);
        let level = event.level(split.level);
        match event.exception(split.message) {
            Some(exception) => {
                self.add_with_exception(split.message, level, &exception.template_suffix())
            }
            None => self.add_with_level(split.message, level),
        }
    }

    /// Adds one message seen at `level`.
    pub fn add_with_level(&mut self, message: &str, level: Option<Level>) -> Added {
        self.add_keyed(message, level, None)
    }

    /// Adds one message of an event carrying an exception: the template is the message's,
    /// then [`EXCEPTION_MARK`] and `exception` word for word (`java.lang.NullPointerException
    /// at com.shop.Orders.place`), and only events of the same exception share it.
    pub fn add_with_exception(
        &mut self,
        message: &str,
        level: Option<Level>,
        exception: &str,
    ) -> Added {
        self.add_keyed(message, level, Some(exception))
    }

    fn add_keyed(&mut self, message: &str, level: Option<Level>, exception: Option<&str>) -> Added {
        let message = clip(message, self.config.max_message_bytes);
        let token_limit = self.config.max_tokens.clamp(1, 128);
        token::tokenize(message, token_limit, &mut self.token_ranges);
        self.token_kinds.clear();
        let mut hasher = ShapeHasher::new();
        hasher.write_u64(self.token_ranges.len() as u64);
        let bytes = message.as_bytes();
        for &(start, end) in &self.token_ranges {
            let kind = token::hash_masked(&bytes[start as usize..end as usize], &mut hasher);
            self.token_kinds.push(kind);
        }
        let key = exception.map_or(0, exception_key);
        if key != 0 {
            hasher.write_u64(key);
        }
        let shape = hasher.finish();
        if let Some(&index) = self.shapes.get(&shape) {
            let root = self.root(index);
            let slot = &mut self.slots[root as usize];
            slot.count += 1;
            slot.note_level(level);
            return Added {
                id: slot.id,
                change: Change::None,
            };
        }
        let mut pieces = self
            .token_ranges
            .iter()
            .zip(&self.token_kinds)
            .map(|(&(start, end), &kind)| {
                let text = token::masked_text(&message[start as usize..end as usize]);
                if text == WILDCARD {
                    Piece::Wild
                } else {
                    let skeleton = Skeleton::of(&text);
                    Piece::Const {
                        text: text.into(),
                        kind,
                        skeleton,
                    }
                }
            })
            .collect::<Vec<_>>();
        if let Some(exception) = exception {
            let words = std::iter::once(EXCEPTION_MARK).chain(exception.split_ascii_whitespace());
            pieces.extend(words.map(piece_of_template_word));
        }
        let (index, change) = self.place(pieces, key);
        if self.shapes.len() >= self.config.max_shapes {
            self.shapes.clear();
        }
        self.shapes.insert(shape, index);
        let root = self.root(index);
        let slot = &mut self.slots[root as usize];
        slot.count += 1;
        slot.note_level(level);
        Added {
            id: slot.id,
            change,
        }
    }

    /// The live templates, in the order they were first seen.
    pub fn templates(&self) -> Vec<Template> {
        self.slots
            .iter()
            .filter(|slot| slot.merged_into.is_none())
            .map(Slot::template)
            .collect()
    }

    /// How many live templates there are.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True before the first template.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The id a template goes by now: its own, or the id of the template that absorbed it
    /// when several templates turned out to be one with a variable. `None` for an id this
    /// miner never gave.
    pub fn resolve(&self, id: TemplateId) -> Option<TemplateId> {
        let index = *self.by_id.get(&id)?;
        Some(self.slots[self.root(index) as usize].id)
    }

    /// The template an id goes by now (see [`Miner::resolve`]).
    pub fn template(&self, id: TemplateId) -> Option<Template> {
        let index = *self.by_id.get(&id)?;
        Some(self.slots[self.root(index) as usize].template())
    }

    fn root(&self, mut index: u32) -> u32 {
        while let Some(parent) = self.slots[index as usize].merged_into {
            index = parent;
        }
        index
    }

    fn push_slot(&mut self, id: TemplateId, pieces: Vec<Piece>, key: u64) -> u32 {
        let index = self.slots.len() as u32;
        self.by_length.entry(pieces.len()).or_default().push(index);
        self.by_id.insert(id, index);
        self.slots.push(Slot {
            id,
            pieces,
            count: 0,
            level: None,
            key,
            merged_into: None,
            families: Vec::new(),
        });
        self.live += 1;
        index
    }

    /// Finds or makes the template of a new shape.
    fn place(&mut self, pieces: Vec<Piece>, key: u64) -> (u32, Change) {
        let full = self.slots.len() >= self.config.max_templates;
        let Some((index, score)) = self.closest(&pieces, full, key) else {
            if full {
                return (self.catch_all_slot(), Change::None);
            }
            let id = self.take_id(&pieces);
            return (self.push_slot(id, pieces, key), Change::New);
        };
        if score.word_positions == 0 || full {
            let changed = generalise(&mut self.slots[index as usize].pieces, &pieces);
            return (index, change_of(changed));
        }
        // Differing words: a template of its own until enough variants show the positions
        // hold a variable.
        let id = self.take_id(&pieces);
        let sibling = self.push_slot(id, pieces, key);
        let min_values = self.config.min_word_values.max(2);
        let families = &mut self.slots[index as usize].families;
        let family = match families
            .iter_mut()
            .position(|(positions, _)| *positions == score.word_positions)
        {
            Some(found) => &mut families[found].1,
            None => {
                families.push((score.word_positions, Vec::new()));
                let last = families.len() - 1;
                &mut families[last].1
            }
        };
        family.push(sibling);
        if family.len() + 1 < min_values {
            return (sibling, Change::New);
        }
        let members = std::mem::take(family);
        for member in members {
            self.absorb(index, member);
        }
        (index, Change::Generalised)
    }

    /// Merges the template at `member` into the one at `into`.
    fn absorb(&mut self, into: u32, member: u32) {
        let member_slot = &mut self.slots[member as usize];
        if member_slot.merged_into.is_some() {
            return;
        }
        let pieces = std::mem::take(&mut member_slot.pieces);
        let count = member_slot.count;
        let level = member_slot.level;
        member_slot.families = Vec::new();
        member_slot.merged_into = Some(into);
        if let Some(list) = self.by_length.get_mut(&pieces.len()) {
            list.retain(|&candidate| candidate != member);
        }
        self.live -= 1;
        let target = &mut self.slots[into as usize];
        generalise(&mut target.pieces, &pieces);
        target.count += count;
        target.note_level(level);
    }

    /// The id of a new template starting as `pieces`: [`id_of_text`], or the next free one
    /// after it when this miner has given that id to another template already.
    fn take_id(&self, pieces: &[Piece]) -> TemplateId {
        let mut candidate = id_of_text(pieces);
        while self.by_id.contains_key(&TemplateId(candidate)) {
            candidate = candidate % MAX_TEMPLATE_ID + 1;
        }
        TemplateId(candidate)
    }

    fn catch_all_slot(&mut self) -> u32 {
        if let Some(index) = self.catch_all {
            return index;
        }
        let id = self.take_id(&[Piece::Wild]);
        let index = self.push_slot(id, vec![Piece::Wild], 0);
        self.catch_all = Some(index);
        index
    }

    /// The closest template of the same length that may take the shape; with `forced`, the
    /// closest one whatever its similarity.
    fn closest(&self, pieces: &[Piece], forced: bool, key: u64) -> Option<(u32, Score)> {
        let candidates = self.by_length.get(&pieces.len())?;
        let mut best: Option<(u32, Score)> = None;
        for &index in candidates {
            let slot = &self.slots[index as usize];
            if slot.key != key {
                continue;
            }
            let Some(score) = score(&slot.pieces, pieces, self.config.similarity, forced) else {
                continue;
            };
            let improves = match &best {
                Some((_, best_score)) => score.better_than(best_score),
                None => true,
            };
            if improves {
                best = Some((index, score));
            }
        }
        best
    }
}

/// The largest template id: ids fit in 53 bits, so that they stay exact as JSON numbers
/// anywhere they are read as such.
const MAX_TEMPLATE_ID: u64 = (1 << 53) - 1;

/// The id a template starting as `pieces` is given, in `1..=MAX_TEMPLATE_ID`: 64-bit FNV-1a
/// of its words (as [`Slot::text`] writes them) each followed by a zero byte. Part of what the
/// store keeps: replicas (and versions) agree on ids only while it stays the same.
fn id_of_text(pieces: &[Piece]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for piece in pieces {
        let word = match piece {
            Piece::Wild => WILDCARD,
            Piece::Const { text, .. } => text,
        };
        for byte in word.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash % MAX_TEMPLATE_ID + 1
}

/// A word of a template as stored, read back as a piece: the same piece for the word as
/// mined and as rebuilt from the stored text.
fn piece_of_template_word(text: &str) -> Piece {
    if text == WILDCARD {
        return Piece::Wild;
    }
    Piece::Const {
        text: text.into(),
        kind: token::kind_of_masked(text),
        skeleton: Skeleton::of(text),
    }
}

/// The key of the templates of one exception (never 0, the key of templates without one).
fn exception_key(exception: &str) -> u64 {
    let mut hasher = ShapeHasher::new();
    for word in exception.split_ascii_whitespace() {
        hasher.write_bytes(word.as_bytes());
        hasher.write_u64(0x4000);
    }
    hasher.finish() | 1
}

fn change_of(changed: bool) -> Change {
    if changed {
        Change::Generalised
    } else {
        Change::None
    }
}

/// How well a shape fits a template.
#[derive(Debug, Clone, Copy)]
struct Score {
    /// Constant positions equal in both.
    same: usize,
    /// Positions where the template has a variable and the shape a constant.
    wild: usize,
    /// Positions (a bit each) where a word of the template meets another token.
    word_positions: u128,
}

impl Score {
    fn better_than(&self, other: &Score) -> bool {
        (self.same, usize::MAX - self.wild) > (other.same, usize::MAX - other.wild)
    }
}

fn is_variable(piece: &Piece) -> bool {
    match piece {
        Piece::Wild => true,
        Piece::Const { kind, .. } => *kind == TokenKind::Masked,
    }
}

fn skeleton_of(piece: &Piece, wild: Skeleton) -> Skeleton {
    match piece {
        Piece::Wild => wild,
        Piece::Const { skeleton, .. } => *skeleton,
    }
}

fn score(template: &[Piece], line: &[Piece], similarity: f64, forced: bool) -> Option<Score> {
    let mut same = 0usize;
    let mut wild = 0usize;
    let mut compared = 0usize;
    let mut word_positions = 0u128;
    let wild_skeleton = Skeleton::of(WILDCARD);
    for (position, (piece, token)) in template.iter().zip(line).enumerate() {
        if is_variable(piece) && is_variable(token) {
            continue;
        }
        compared += 1;
        if *piece == Piece::Wild {
            wild += 1;
            continue;
        }
        if piece == token {
            same += 1;
            continue;
        }
        if !skeleton_of(piece, wild_skeleton).matches(&skeleton_of(token, wild_skeleton)) {
            if position == 0 && !forced {
                return None;
            }
            word_positions |= 1u128 << position.min(127);
        }
    }
    let score = Score {
        same,
        wild,
        word_positions,
    };
    if forced {
        return Some(score);
    }
    if template.len() <= 1 && word_positions != 0 {
        return None;
    }
    if compared == 0 {
        return Some(score);
    }
    if same == 0 || (same as f64) < similarity * compared as f64 {
        return None;
    }
    Some(score)
}

/// Turns the positions where `other` differs into variables; true when the text changed.
fn generalise(pieces: &mut [Piece], other: &[Piece]) -> bool {
    let mut changed = false;
    for (piece, token) in pieces.iter_mut().zip(other) {
        if *piece != Piece::Wild && piece != token {
            *piece = Piece::Wild;
            changed = true;
        }
    }
    changed
}

/// The longest prefix of `text` of at most `limit` bytes that ends on a character boundary.
fn clip(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_that_differ_in_numbers_share_a_template() {
        let mut miner = Miner::default();
        let first = miner.add("connection to 10.0.0.1:80 lost after 30 s");
        let second = miner.add("connection to 10.0.0.2:443 lost after 7 s");
        assert_eq!(first.change, Change::New);
        assert_eq!(second.change, Change::None);
        assert_eq!(first.id, second.id);
        let template = miner.template(first.id).unwrap();
        assert_eq!(template.text, "connection to <*>:<*> lost after <*> s");
        assert_eq!(template.count, 2);
    }

    #[test]
    fn different_messages_get_different_templates() {
        let mut miner = Miner::default();
        let opened = miner.add("session opened for user root");
        let closed = miner.add("cache flushed in 12 ms");
        assert_ne!(opened.id, closed.id);
        assert_eq!(miner.len(), 2);
    }

    #[test]
    fn ids_stay_when_the_text_generalises() {
        let mut miner = Miner::default();
        let first = miner.add("Invalid user webmaster from 10.1.1.1");
        let mut last = first;
        for user in ["admin", "oracle", "test", "guest", "postgres", "ubuntu"] {
            last = miner.add(&format!("Invalid user {user} from 10.1.1.2"));
        }
        assert_eq!(miner.resolve(first.id), Some(last.id));
        assert_eq!(last.id, first.id);
        let template = miner.template(first.id).unwrap();
        assert_eq!(template.text, "Invalid user <*> from <*>");
        assert_eq!(template.count, 7);
        assert_eq!(miner.len(), 1);
    }

    #[test]
    fn one_word_apart_stays_apart_until_many_values() {
        let mut miner = Miner::default();
        let get = miner.add("request GET /orders took 12 ms");
        let post = miner.add("request POST /orders took 15 ms");
        assert_ne!(get.id, post.id);
        assert_eq!(miner.resolve(post.id), Some(post.id));
    }

    #[test]
    fn levels_keep_the_most_severe() {
        let mut miner = Miner::default();
        let first = miner.add_with_level("disk 1 is slow", Some(Level::Warn));
        miner.add_with_level("disk 2 is slow", Some(Level::Error));
        miner.add_with_level("disk 3 is slow", Some(Level::Info));
        let template = miner.template(first.id).unwrap();
        assert_eq!(template.level, Some(Level::Error));
        assert_eq!(template.to_log_template().level, "ERROR");
        assert!(template.to_log_template().is_exception());
    }

    #[test]
    fn a_rebuilt_miner_keeps_ids_and_counts() {
        let lines = [
            "worker 3 started",
            "queue orders has 12 items",
            "worker 4 started",
            "payment 991 refused: card expired",
        ];
        let mut miner = Miner::default();
        let ids = lines.map(|line| miner.add(line).id);
        let stored = serde_json::to_string(&miner.templates()).unwrap();
        let templates: Vec<Template> = serde_json::from_str(&stored).unwrap();
        let mut rebuilt = Miner::from_templates(MinerConfig::default(), templates);
        assert_eq!(rebuilt.templates(), miner.templates());
        for (line, id) in lines.iter().zip(ids) {
            let again = rebuilt.add(line);
            assert_eq!(again.id, id, "{line}");
            assert_eq!(again.change, Change::None);
        }
        let fresh = rebuilt.add("cache warmed in 40 ms");
        assert_eq!(fresh.change, Change::New);
        assert!(ids.iter().all(|id| fresh.id != *id));
    }

    #[test]
    fn miners_agree_on_the_ids_of_the_events_they_share_and_not_on_others() {
        let shared = [
            "worker 3 started",
            "queue orders has 12 items",
            "payment 991 refused: card expired",
        ];
        let mut first = Miner::default();
        let mut second = Miner::default();
        let first_ids: Vec<TemplateId> = shared.iter().map(|line| first.add(line).id).collect();
        let only_second = second.add("cache warmed in 40 ms").id;
        let mut second_ids: Vec<TemplateId> = shared
            .iter()
            .rev()
            .map(|line| second.add(line).id)
            .collect();
        second_ids.reverse();
        assert_eq!(first_ids, second_ids, "the same events, in another order");
        let only_first = first.add("index rebuilt for table users").id;
        assert_ne!(only_first, only_second);
        assert!(!first_ids.contains(&only_second));
        // Generalising keeps the id the template started with.
        let later = second.add("worker 4 started");
        assert_eq!(later.id, first_ids[0]);
        assert_eq!(
            second.template(later.id).unwrap().text,
            "worker <*> started"
        );
    }

    #[test]
    fn a_taken_id_is_not_given_to_another_template() {
        let mut miner = Miner::default();
        let first = miner.add("session opened for user root");
        let stored = miner.templates();
        // A template another miner stored under the id this miner would give a new one.
        let mut other = Miner::from_templates(
            MinerConfig::default(),
            [Template {
                id: first.id,
                text: "cache flushed in <*> ms".to_owned(),
                count: 1,
                level: None,
            }],
        );
        let added = other.add("session opened for user root");
        assert_eq!(added.change, Change::New);
        assert_ne!(added.id, first.id);
        assert_eq!(
            other.template(first.id).unwrap().text,
            "cache flushed in <*> ms"
        );
        assert_eq!(other.template(added.id).unwrap().text, stored[0].text);
    }

    #[test]
    fn the_template_count_is_bounded() {
        let config = MinerConfig {
            max_templates: 3,
            ..MinerConfig::default()
        };
        let mut miner = Miner::new(config);
        for word in ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"] {
            miner.add(&format!("{word} is unknown here"));
            miner.add(word);
        }
        assert!(miner.templates().len() <= 4, "{:?}", miner.templates());
    }

    #[test]
    fn long_messages_are_clipped_on_a_character_boundary() {
        let config = MinerConfig {
            max_message_bytes: 5,
            max_tokens: 2,
            ..MinerConfig::default()
        };
        let mut miner = Miner::new(config);
        let added = miner.add("ééé a b c d");
        assert_eq!(miner.template(added.id).unwrap().text, "éé");
    }

    #[test]
    fn exceptions_set_templates_apart_and_survive_a_rebuild() {
        let mut miner = Miner::default();
        let first = miner.add_with_exception(
            "order 42 failed",
            Some(Level::Error),
            "java.lang.IllegalStateException at com.shop.Orders.place",
        );
        let again = miner.add_with_exception(
            "order 43 failed",
            Some(Level::Error),
            "java.lang.IllegalStateException at com.shop.Orders.place",
        );
        let other = miner.add_with_exception(
            "order 44 failed",
            Some(Level::Error),
            "java.lang.NullPointerException at com.shop.Orders.place",
        );
        let plain = miner.add("order 45 failed");
        assert_eq!(first.id, again.id);
        assert_ne!(first.id, other.id);
        assert_ne!(first.id, plain.id);
        assert_ne!(other.id, plain.id);
        assert_eq!(
            miner.template(first.id).unwrap().text,
            "order <*> failed => java.lang.IllegalStateException at com.shop.Orders.place"
        );
        // Many different exceptions under one message never merge into one template.
        for index in 0..8 {
            miner.add_with_exception("order 46 failed", None, &format!("app.Error{index}"));
        }
        assert_eq!(miner.len(), 3 + 8);
        let mut rebuilt = Miner::from_templates(MinerConfig::default(), miner.templates());
        let rebuilt_first = rebuilt.add_with_exception(
            "order 47 failed",
            Some(Level::Error),
            "java.lang.IllegalStateException at com.shop.Orders.place",
        );
        assert_eq!(rebuilt_first.id, first.id);
        assert_eq!(rebuilt_first.change, Change::None);
        let rebuilt_plain = rebuilt.add("order 48 failed");
        assert_eq!(rebuilt_plain.id, plain.id);
        let rebuilt_other = rebuilt.add_with_exception("order 49 failed", None, "app.Error3");
        assert_eq!(rebuilt_other.change, Change::None);
        assert_eq!(rebuilt.len(), miner.len());
    }

    #[test]
    fn an_event_is_mined_by_its_first_line_and_its_exception() {
        let mut grouper = super::super::Grouper::default();
        let lines = [
            "2024-05-01 10:00:01 WARN [x] com.shop.Api: request 7 failed",
            "java.io.IOException: broken pipe",
            "\tat com.shop.Api.write(Api.java:31)",
        ];
        for line in lines {
            grouper.push(line);
        }
        let event = grouper.finish().unwrap();
        let mut miner = Miner::default();
        let added = miner.add_event(lines[0], &HeaderFormat::Auto, &event);
        let template = miner.template(added.id).unwrap();
        assert_eq!(
            template.text,
            "request <*> failed => java.io.IOException at com.shop.Api.write"
        );
        assert_eq!(template.level, Some(Level::Error));
        let single = super::super::Grouper::default().push(lines[0]);
        assert_eq!(single, super::super::Pushed::Opened(None));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..20)) {
            let mut miner = Miner::default();
            let format = HeaderFormat::Auto;
            for bytes in &lines {
                let line = String::from_utf8_lossy(bytes);
                let added = miner.add_line(&line, &format);
                prop_assert!(miner.template(added.id).is_some());
            }
            let total: u64 = miner.templates().iter().map(|template| template.count).sum();
            prop_assert_eq!(total, lines.len() as u64);
        }

        #[test]
        fn log_like_text_never_panics(lines in proptest::collection::vec("[a-zA-Z0-9 :\\[\\]()<>=,.|*/-]{0,80}", 1..30)) {
            let mut miner = Miner::default();
            for line in &lines {
                let added = miner.add_line(line, &HeaderFormat::Auto);
                let resolved = miner.resolve(added.id);
                prop_assert_eq!(resolved, Some(added.id));
            }
            let rebuilt = Miner::from_templates(MinerConfig::default(), miner.templates());
            prop_assert_eq!(rebuilt.templates(), miner.templates());
        }
    }
}
