//! A large user's full plan, made and carried out in parts (issue 12): what a plan holds in
//! memory grows with its records (desired sets, links with their bases, record plans, work
//! items: a few KiB each), so a user with more records than a part is planned a part at a
//! time, in record-id order, and each part is carried out and committed before the next is
//! built. The result is the plan made whole: every part starts from the Google items all of
//! the user's links hold (`claimed_by_links`), records are planned in the same order, and
//! the phone's own items (imports, leftovers carrying our marker) are planned last with the
//! listing's commit (index of unlinked items, sync token — saved only when every part went
//! through). The breaker weighs the whole plan before anything is written: the parts are
//! planned once to count their deletions, then again to be carried out.

use super::*;
use crate::crm::Cursor;
use crate::security::AccessError;
use crate::sync::desired::UserSets;
use crate::sync::execute::KindOutcome;
use crate::sync::plan::{claimed_by_links, plan_phone_new, plan_records, Case, Synced};

/// The sets of one part of a user's records (`only` those ids; `linked`: those of them with
/// a link, for the reasons they left).
type PartSets<'a, T> = dyn Fn(&BTreeSet<CrmId>, &mut dyn Iterator<Item = &CrmId>) -> Result<UserSets<T>, AccessError>
    + 'a;

/// One kind of a user's plan, in parts.
struct KindParts<'a, T> {
    user: &'a UserId,
    state: &'a StateDb,
    /// Every record of the kind the plan covers (desired, retained or linked), ascending
    /// and distinct (a list: a user may have most of the org's records).
    ids: &'a [CrmId],
    part: usize,
    sets: &'a PartSets<'a, T>,
    view: &'a RemoteView<T>,
    unlinked: &'a [RemoteItem<T>],
    reported: &'a BTreeSet<String>,
    policies: Policies,
    crm_match: &'a dyn Fn(&T) -> CrmMatch,
    event_id: &'a dyn Fn(&CrmId, i64) -> String,
    import_id: &'a dyn Fn(&str) -> CrmId,
}

/// Why a part could not be planned.
enum PartError {
    Store(StoreError),
    /// The desired sets could not be computed: the user's pass fails with this message.
    Sets(String),
}

impl From<StoreError> for PartError {
    fn from(e: StoreError) -> Self {
        PartError::Store(e)
    }
}

/// What one part's plan is made from (its input borrows it).
struct PartData<T> {
    links: BTreeMap<CrmId, Link<T>>,
    sets: UserSets<T>,
}

impl<T: RemoteKind + Synced> KindParts<'_, T> {
    fn claimed(&self) -> Result<BTreeSet<String>, StoreError> {
        let linked = self.state.linked_google_ids(self.user, T::KIND)?;
        Ok(claimed_by_links(linked, self.view))
    }

    /// The parts (record ids in order, `part` at a time), then `None`: the phone's own
    /// items. Each part's ids are copied only when it comes up.
    fn parts(&self) -> impl Iterator<Item = Option<BTreeSet<CrmId>>> + '_ {
        self.ids
            .chunks(self.part.max(1))
            .map(|chunk| Some(chunk.iter().cloned().collect()))
            .chain(std::iter::once(None))
    }

    /// How many parts [`KindParts::parts`] makes (without copying the ids).
    fn part_count(&self) -> usize {
        self.ids.len().div_ceil(self.part.max(1)) + 1
    }

    /// The links and sets of `part`; for the phone's part, of the records its unclaimed
    /// marked items name (desired ones are left alone, the others are leftovers whose
    /// reason to leave the audit tells).
    fn data(
        &self,
        part: Option<&BTreeSet<CrmId>>,
        claimed: &BTreeSet<String>,
    ) -> Result<PartData<T>, PartError> {
        let markers: BTreeSet<CrmId>;
        let ids = match part {
            Some(ids) => ids,
            None => {
                markers = self
                    .unlinked
                    .iter()
                    .chain(self.view.present.values())
                    .filter(|i| !claimed.contains(&i.google_id))
                    .filter_map(|i| i.crm_id.clone())
                    .collect();
                &markers
            }
        };
        let links: BTreeMap<CrmId, Link<T>> = self.state.links_for(self.user, T::KIND, ids)?;
        let sets = (self.sets)(ids, &mut links.keys())
            .map_err(|e| PartError::Sets(format!("desired sets: {e}")))?;
        Ok(PartData { links, sets })
    }

    fn input<'s>(&'s self, data: &'s PartData<T>) -> PlanInput<'s, T> {
        PlanInput {
            desired: &data.sets.desired,
            retained: &data.sets.retained,
            links: &data.links,
            remote: self.view,
            unlinked: self.unlinked,
            already_reported: self.reported,
            lost_reasons: &data.sets.lost,
            policies: self.policies,
            crm_match: self.crm_match,
            event_id: self.event_id,
            import_id: self.import_id,
            marked: Default::default(),
            explain: false,
        }
    }

    fn plan(
        input: &PlanInput<'_, T>,
        phone: bool,
        claimed: &mut BTreeSet<String>,
    ) -> Vec<RecordPlan<T>> {
        if phone {
            plan_phone_new(input, claimed)
        } else {
            plan_records(input, claimed)
        }
    }

    /// The Google deletions of the whole plan (what the breaker weighs).
    fn deletions(&self) -> Result<usize, PartError> {
        let mut claimed = self.claimed()?;
        let mut deletions = 0;
        for part in self.parts() {
            let data = self.data(part.as_ref(), &claimed)?;
            let input = self.input(&data);
            deletions += Self::plan(&input, part.is_none(), &mut claimed)
                .iter()
                .filter(|r| r.deletes_from_google() && r.case == Case::Lost)
                .count();
        }
        Ok(deletions)
    }

    /// Plans and carries out each part, then the phone's own items with the listing.
    async fn execute<R: Remote>(
        &self,
        ctx: &UserCtx<'_, R>,
        hooks: &Hooks<'_, T>,
        listing: &Listing<T>,
    ) -> Result<KindOutcome, PartError> {
        let mut claimed = self.claimed()?;
        let mut total = KindOutcome {
            complete: true,
            ..KindOutcome::default()
        };
        for part in self.parts() {
            let phone = part.is_none();
            let commit = if phone {
                Commit::Listing {
                    listing,
                    earlier_complete: total.complete,
                    // The listing was made before the first part: what the parts deleted
                    // must not enter the index of unlinked items from it.
                    deleted_before: &total.deleted,
                }
            } else {
                Commit::Part
            };
            let data = self.data(part.as_ref(), &claimed)?;
            let input = self.input(&data);
            let records = Self::plan(&input, phone, &mut claimed);
            let outcome = execute_kind(ctx, &input, records, hooks, commit).await?;
            total.counts.add(&outcome.counts);
            total.errors.extend(outcome.errors);
            total.crm_changed.extend(outcome.crm_changed);
            total.removed.extend(outcome.removed);
            total.deleted.extend(outcome.deleted);
            total.complete &= outcome.complete;
            total.token_saved = outcome.token_saved;
        }
        Ok(total)
    }
}

impl<R: Remote + Offboarding> Engine<'_, R> {
    /// Records planned and carried out at once for one user (see the module): the pass's
    /// budget of records in flight shared among the users synced at once, at least 100.
    pub(super) fn plan_part_size(&self) -> usize {
        let sync = &self.config.sync;
        (sync.max_records_in_flight / sync.concurrency.max(1)).max(100)
    }

    /// A full plan for `user`, made and carried out in parts of [`Engine::plan_part_size`]
    /// records: contacts, then events (the breaker weighs both first).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn plan_in_parts(
        &self,
        access: &Access<'_>,
        user: &User,
        google_user: &GoogleUser,
        resolved: &ResolvedScope,
        options: &SyncOptions,
        run_id: &str,
        report: &mut UserReport,
        (calendar, group): (&str, &str),
        (contact_listing, event_listing): (Listing<SyncedContact>, Listing<SyncedEvent>),
        cursor: Cursor,
    ) -> Result<Planned, EngineError> {
        let model = access.model();
        let scope = &resolved.scope;
        let ids = |kind: ObjectKind| -> Result<Vec<CrmId>, PartError> {
            let mut ids = self.state.linked_crm_ids(&user.id, kind)?;
            if user.active {
                let set = match kind {
                    ObjectKind::Contact => {
                        crate::scope::desired_set(access, &user.id, scope, kind, self.now)
                    }
                    _ => crate::scope::scoped_set(access, &user.id, scope, kind),
                };
                let set = set.map_err(|e| PartError::Sets(format!("desired sets: {e}")))?;
                ids.reserve_exact(set.len());
                ids.extend(set.iter().cloned());
                ids.sort_unstable();
                ids.dedup();
                ids.shrink_to_fit();
            }
            Ok(ids)
        };
        let contact_ids = match settle(ids(ObjectKind::Contact))? {
            Ok(ids) => ids,
            Err(why) => return self.fail(report, why),
        };
        let event_ids = match settle(ids(ObjectKind::Event))? {
            Ok(ids) => ids,
            Err(why) => return self.fail(report, why),
        };

        // Duplicates in a full listing go first, as for a plan made whole; only the links
        // of the records more than one item names matter to the sweep.
        let duplicated = |markers: Vec<&CrmId>| -> BTreeSet<CrmId> {
            let mut seen = BTreeSet::new();
            markers
                .into_iter()
                .filter(|m| !seen.insert(*m))
                .cloned()
                .collect()
        };
        let c_dups = duplicated(marked_ids(&contact_listing));
        let e_dups = duplicated(marked_ids(&event_listing));
        let c_dup_links = self
            .state
            .links_for(&user.id, ObjectKind::Contact, &c_dups)?;
        let e_dup_links = self.state.links_for(&user.id, ObjectKind::Event, &e_dups)?;
        let (group_known, calendar_known) = (Some(group.to_owned()), Some(calendar.to_owned()));
        let (contact_listing, event_listing) = self
            .sweep_duplicates(
                (google_user, options, run_id, &mut *report),
                (&group_known, contact_listing, &c_dup_links),
                (&calendar_known, event_listing, &e_dup_links),
            )
            .await?;

        let (c_unlinked, c_reported) =
            self.unlinked::<SyncedContact>(&user.id, &contact_listing)?;
        let (e_unlinked, e_reported) = self.unlinked::<SyncedEvent>(&user.id, &event_listing)?;
        let c_view = RemoteView::from_changes(&contact_listing.changes, contact_listing.full);
        let e_view = RemoteView::from_changes(&event_listing.changes, event_listing.full);
        let contact_match = |data: &SyncedContact| crm_contact_match(access, &user.id, data);
        let no_match = |_: &SyncedEvent| CrmMatch::default();
        let user_id = user.id.clone();
        let event_id_fn = move |c: &CrmId, g: i64| event_id(&user_id, c, g);
        let user_id = user.id.clone();
        let import_id_fn = move |g: &str| import_id(&user_id, g);
        let contact_sets = |only: &BTreeSet<CrmId>, linked: &mut dyn Iterator<Item = &CrmId>| {
            desired::contact_sets(access, user, scope, self.now, linked, Some(only))
        };
        let event_sets = |only: &BTreeSet<CrmId>, linked: &mut dyn Iterator<Item = &CrmId>| {
            desired::event_sets(access, user, scope, self.now, linked, Some(only))
        };
        let may_create = |kind| access.may_create(&user.id, kind).unwrap_or(false);
        let part = self.plan_part_size();
        let contacts = KindParts {
            user: &user.id,
            state: self.state,
            ids: &contact_ids,
            part,
            sets: &contact_sets,
            view: &c_view,
            unlinked: &c_unlinked,
            reported: &c_reported,
            policies: scope_policies(scope, may_create(ObjectKind::Contact)),
            crm_match: &contact_match,
            event_id: &event_id_fn,
            import_id: &import_id_fn,
        };
        let events = KindParts {
            user: &user.id,
            state: self.state,
            ids: &event_ids,
            part,
            sets: &event_sets,
            view: &e_view,
            unlinked: &e_unlinked,
            reported: &e_reported,
            policies: scope_policies(scope, may_create(ObjectKind::Event)),
            crm_match: &no_match,
            event_id: &event_id_fn,
            import_id: &import_id_fn,
        };

        // The breaker, over the whole plan.
        if user.active && !options.force {
            let (c_deletions, e_deletions) =
                match (settle(contacts.deletions())?, settle(events.deletions())?) {
                    (Ok(c), Ok(e)) => (c, e),
                    (Err(why), _) | (_, Err(why)) => return self.fail(report, why),
                };
            let weighed = [
                (
                    ObjectKind::Contact,
                    c_deletions,
                    self.state.live_link_count(&user.id, ObjectKind::Contact)?,
                ),
                (
                    ObjectKind::Event,
                    e_deletions,
                    self.state.live_link_count(&user.id, ObjectKind::Event)?,
                ),
            ];
            if self.breaker_refuses(model, user, options, run_id, report, weighed)? {
                return Ok(Planned::Early);
            }
        }

        // The parts, carried out: contacts, then events.
        let hooks = UserHooks::new(access, &user.id);
        let contact_ctx = UserCtx {
            remote: self.remote,
            state: self.state,
            crm: &self.crm,
            google_user,
            container: group,
            run_id,
        };
        report.parts = contacts.part_count() + events.part_count();
        let outcome = match settle(
            contacts
                .execute(&contact_ctx, &hooks.contacts(), &contact_listing)
                .await,
        )? {
            Ok(outcome) => outcome,
            Err(why) => return self.fail(report, why),
        };
        let listed = (group, contact_listing.full);
        self.fold_outcome::<SyncedContact>(report, outcome, google_user, listed)
            .await?;
        let event_ctx = UserCtx {
            container: calendar,
            ..contact_ctx
        };
        let outcome = match settle(
            events
                .execute(&event_ctx, &hooks.events(), &event_listing)
                .await,
        )? {
            Ok(outcome) => outcome,
            Err(why) => return self.fail(report, why),
        };
        let listed = (calendar, event_listing.full);
        self.fold_outcome::<SyncedEvent>(report, outcome, google_user, listed)
            .await?;
        Ok(Planned::Full {
            cursor,
            changes_only: false,
        })
    }
}

/// A part's error as the pass takes it: a store error ends the pass, a desired-set error
/// fails the user.
fn settle<X>(result: Result<X, PartError>) -> Result<Result<X, String>, StoreError> {
    match result {
        Ok(x) => Ok(Ok(x)),
        Err(PartError::Sets(why)) => Ok(Err(why)),
        Err(PartError::Store(e)) => Err(e),
    }
}

/// The records the items of a listing name by our marker, once per item.
fn marked_ids<T>(listing: &Listing<T>) -> Vec<&CrmId> {
    listing
        .changes
        .iter()
        .filter_map(|c| match c {
            RemoteChange::Present(it) if it.recurring_parent.is_none() => it.crm_id.as_ref(),
            _ => None,
        })
        .collect()
}
